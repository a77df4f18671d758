// The placeholder registry's pure core (src/broker/placeholders.ts): issue, present (verify),
// rotate, reuse revoking the chain, the retry grace, expiry on an injected clock, revoke, list,
// pruning and the caps. Its file edge (placeholder-store.ts) is tested at the end.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  MAX_ACTIVE,
  PLACEHOLDER_PREFIX,
  PlaceholderLimitError,
  PlaceholderRegistry,
  RETAIN_ENDED_MS,
  ROTATION_GRACE_MS,
  hashPlaceholder,
  isPlaceholder,
} from '../src/broker/placeholders.js'
import { loadPlaceholders, savePlaceholders } from '../src/broker/placeholder-store.js'
import pino from 'pino'
import { Broker } from '../src/broker/broker.js'
import type { SpendEntry } from '../src/refresh/refresher.js'
import type { TokenData } from '../src/types.js'
import { fakeJwt } from './support/tokens.js'

function clock(start = 1_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

function registry(c = clock(), ttlMs = 60_000) {
  return { c, reg: new PlaceholderRegistry({ now: c.now, ttlMs }) }
}

const peer = { pid: 42, uid: 1000, exe: '/usr/bin/ssh' }

t.test('issue: an unguessable string with the prefix; only its hash is kept', async (t) => {
  const { reg } = registry()
  const a = reg.issue({ label: 'host:alice@build1', socket: 'restricted', peer })
  const b = reg.issue({ label: 'sink', socket: 'restricted', peer: null })
  t.ok(a.placeholder.startsWith(PLACEHOLDER_PREFIX))
  t.match(a.placeholder.slice(PLACEHOLDER_PREFIX.length), /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url')
  t.not(a.placeholder, b.placeholder)
  t.ok(isPlaceholder(a.placeholder))
  t.notOk(isPlaceholder('rt-real-refresh-token'))
  t.equal(a.record.hash, hashPlaceholder(a.placeholder))
  t.notOk(JSON.stringify(reg.records()).includes(a.placeholder), 'the records never hold the string')
  t.notOk(JSON.stringify(reg.list()).includes(a.placeholder), 'nor the list')
  t.match(reg.list(), [
    { id: a.record.id, label: 'host:alice@build1', socket: 'restricted', state: 'active', uses: 0, lastUsedAt: null, peer },
    { id: b.record.id, label: 'sink', state: 'active', peer: null },
  ])
})

t.test('present: ok on its socket; unknown on the other, or for anything unknown; not_placeholder for a real token', async (t) => {
  const { reg } = registry()
  const r = reg.issue({ label: 'x', socket: 'restricted', peer: null })
  const m = reg.issue({ label: 'y', socket: 'main', peer: null })
  t.match(reg.present(r.placeholder, 'restricted'), { kind: 'ok', record: { id: r.record.id } })
  t.same(reg.present(r.placeholder, 'main'), { kind: 'unknown', why: 'wrong_socket' }, 'issued on restricted, refused on main')
  t.same(reg.present(m.placeholder, 'restricted'), { kind: 'unknown', why: 'wrong_socket' }, 'and vice versa')
  t.same(reg.present(PLACEHOLDER_PREFIX + 'guess', 'restricted'), { kind: 'unknown', why: 'unknown' })
  t.same(reg.present('rt-real', 'restricted'), { kind: 'not_placeholder' })
  t.equal(reg.list().every((x) => x.uses === 0 && x.state === 'active'), true, 'a refused presentation changes nothing')
})

t.test('rotate: a new placeholder of the same chain with a fresh lifetime; the old one presented again is reuse, the chain revoked', async (t) => {
  const { c, reg } = registry()
  const first = reg.issue({ label: 'x', socket: 'restricted', peer })
  c.advance(30_000)
  const second = reg.rotate(first.record.id)
  t.equal(second.record.family, first.record.id)
  t.equal(second.record.expiresAt, c.now() + 60_000, 'a fresh TTL')
  t.match(reg.get(first.record.id), { state: 'rotated', uses: 1, lastUsedAt: c.now(), successor: second.record.id })
  c.advance(1000)
  t.match(reg.present(second.placeholder, 'restricted'), { kind: 'ok' })
  const third = reg.rotate(second.record.id)
  // The second one again, long after: reuse. The whole chain ends, the third included.
  c.advance(ROTATION_GRACE_MS + 1)
  const v = reg.present(second.placeholder, 'restricted')
  t.match(v, { kind: 'reused', revoked: 1, record: { id: second.record.id, state: 'reused' } })
  t.equal(reg.stateOf(reg.get(third.record.id)!), 'revoked', 'the chain\'s active placeholder is revoked')
  t.match(reg.present(third.placeholder, 'restricted'), { kind: 'revoked' }, 'so the thief\'s or the owner\'s next use is refused')
  t.match(reg.present(first.placeholder, 'restricted'), { kind: 'reused', revoked: 0 }, 'an older one again: reuse too, nothing left to revoke')
  t.same(reg.list().map((x) => x.state), ['reused', 'reused', 'revoked'])
})

t.test('the retry grace: the same rotated placeholder again at once, its successor unused, gets the same successor', async (t) => {
  const { c, reg } = registry()
  const first = reg.issue({ label: 'x', socket: 'restricted', peer: null })
  const second = reg.rotate(first.record.id)
  c.advance(ROTATION_GRACE_MS - 1)
  const v = reg.present(first.placeholder, 'restricted')
  t.match(v, { kind: 'retry', successor: { id: second.record.id } })
  t.ok(v.kind === 'retry' && v.placeholder === second.placeholder, 'the same successor string')
  // Once the successor has been used, the old one is reuse even within the grace.
  reg.touch(second.record.id)
  t.match(reg.present(first.placeholder, 'restricted'), { kind: 'reused' })
  // After the grace, without a use: reuse as well.
  const { c: c2, reg: reg2 } = registry()
  const a = reg2.issue({ label: 'x', socket: 'restricted', peer: null })
  reg2.rotate(a.record.id)
  c2.advance(ROTATION_GRACE_MS + 1)
  t.match(reg2.present(a.placeholder, 'restricted'), { kind: 'reused', revoked: 1 })
  // A registry loaded from disk has no grace strings: reuse (documented).
  const a3 = new PlaceholderRegistry({ now: c2.now }, reg2.records())
  t.equal(a3.list().length, 2)
})

t.test('expiry on the injected clock; a rotated one past its own expiry is still reuse', async (t) => {
  const { c, reg } = registry(clock(), 10_000)
  const a = reg.issue({ label: 'x', socket: 'main', peer: null })
  const b = reg.issue({ label: 'y', socket: 'main', peer: null })
  const b2 = reg.rotate(b.record.id)
  c.advance(10_000)
  t.match(reg.present(a.placeholder, 'main'), { kind: 'expired' })
  t.equal(reg.list().find((x) => x.id === a.record.id)!.state, 'expired')
  t.match(reg.present(b.placeholder, 'main'), { kind: 'reused', revoked: 0 }, 'b2 has expired too: nothing active revoked')
  t.equal(reg.stateOf(reg.get(b2.record.id)!), 'revoked')
  t.equal(reg.activeCount(), 0)
})

t.test('revoke: one chain by any of its ids; issue with replaces revokes that chain (same socket only)', async (t) => {
  const { reg } = registry()
  const a = reg.issue({ label: 'a', socket: 'restricted', peer: null })
  const a2 = reg.rotate(a.record.id)
  const b = reg.issue({ label: 'b', socket: 'restricted', peer: null })
  t.equal(reg.revoke(a.record.id), true, 'by the chain\'s first id')
  t.match(reg.present(a2.placeholder, 'restricted'), { kind: 'revoked' })
  t.match(reg.present(b.placeholder, 'restricted'), { kind: 'ok' }, 'the other chain is untouched')
  t.equal(reg.revoke(a.record.id), false, 'nothing left to revoke')
  t.equal(reg.revoke('ph-unknown'), false)
  const m = reg.issue({ label: 'm', socket: 'main', peer: null })
  reg.issue({ label: 'b again', socket: 'restricted', peer: null, replaces: m.record.id })
  t.match(reg.present(m.placeholder, 'main'), { kind: 'ok' }, 'replaces names only the same socket\'s placeholders')
  const b2 = reg.issue({ label: 'b again', socket: 'restricted', peer: null, replaces: b.record.id })
  t.match(reg.present(b.placeholder, 'restricted'), { kind: 'revoked' }, 'the replaced one is revoked')
  t.match(reg.present(b2.placeholder, 'restricted'), { kind: 'ok' })
})

t.test('caps: MAX_ACTIVE active at most (replaces frees its slot); ended records pruned after RETAIN_ENDED_MS', async (t) => {
  const { c, reg } = registry(clock(), 1000)
  let last = reg.issue({ label: 'x', socket: 'restricted', peer: null })
  for (let i = 1; i < MAX_ACTIVE; i++) last = reg.issue({ label: 'x', socket: 'restricted', peer: null })
  t.throws(() => reg.issue({ label: 'x', socket: 'restricted', peer: null }), PlaceholderLimitError)
  t.doesNotThrow(() => reg.issue({ label: 'x', socket: 'restricted', peer: null, replaces: last.record.id }), 'a replacement fits')
  c.advance(1000 + RETAIN_ENDED_MS + 1)
  reg.issue({ label: 'new', socket: 'restricted', peer: null })
  t.same(reg.list().map((x) => x.label), ['new'], 'long-expired records are forgotten')
})

t.test('the store: 0600, atomic, hashes only; loaded back; a damaged file is reported and not served from', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cad-ph-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'authd-placeholders.json')
  const { reg } = registry()
  const a = reg.issue({ label: 'x', socket: 'restricted', peer })
  reg.rotate(a.record.id)
  await savePlaceholders(file, reg.records())
  t.equal(fs.statSync(file).mode & 0o777, 0o600)
  const text = fs.readFileSync(file, 'utf8')
  t.notOk(text.includes(a.placeholder), 'the string is not in the file')
  t.same(fs.readdirSync(dir), ['authd-placeholders.json'], 'no temp file left')
  const loaded = await loadPlaceholders(file)
  t.equal(loaded.problem, null)
  t.same(loaded.records, reg.records())
  const again = new PlaceholderRegistry({}, loaded.records)
  t.match(again.present(a.placeholder, 'restricted'), { kind: 'reused' }, 'reuse is detected across a restart')
  t.same(await loadPlaceholders(path.join(dir, 'missing.json')), { records: [], problem: null })
  fs.writeFileSync(file, '{"version":1,"records":[{"id":1}]}')
  const bad = await loadPlaceholders(file)
  t.same(bad.records, [])
  t.match(bad.problem, /not a placeholder record/)
})

t.test('the broker: a 401 recovery for an access token older than the current one gets the current tokens, no spend', async (t) => {
  let n = 0
  const mint = (): TokenData => {
    n++
    return { idToken: fakeJwt({ n }), accessToken: fakeJwt({ n, exp: Math.floor(Date.now() / 1000) + 3600 }), refreshToken: `rt-${n}`, accountId: 'acc', extra: {} }
  }
  let current = mint()
  const spends = new Map<string, SpendEntry>()
  let spent = 0
  const refresher = {
    brokerState: () => ({ current, spends, permanentKind: null, backoffUntil: null, loopGuardUntil: null }),
    brokerSpend: async () => {
      spent++
      const next = mint()
      spends.set(current.refreshToken, { state: 'done', tokens: next, settled: Promise.resolve() })
      current = next
    },
  }
  const registry = new PlaceholderRegistry()
  const broker = new Broker({
    refresher: () => refresher,
    reload: async () => {},
    revoke: async () => true,
    remove: async () => {},
    log: pino({ level: 'silent' }),
    placeholders: { registry, save: async () => {} },
  })
  const body = (refresh_token: string, refresh_reason = 'unauthorized_recovery') => ({ client_id: 'c', grant_type: 'refresh_token', refresh_reason, refresh_token })
  // Handed out with the first access token; the daemon has refreshed since (its own schedule).
  const a = registry.issue({ label: 'x', socket: 'restricted', peer: null, accessToken: current.accessToken })
  await refresher.brokerSpend()
  t.equal(spent, 1)
  const stale = await broker.refresh(body(a.placeholder), 'restricted')
  t.equal(stale.status, 200)
  t.ok(stale.body.access_token === current.accessToken, 'the current access token')
  t.equal(spent, 1, 'no spend: the 401 was for an older access token')
  // Now the remote holds the current one: a 401 for it is a real rejection, and spends once.
  const fresh = await broker.refresh(body(stale.body.refresh_token as string), 'restricted')
  t.equal(fresh.status, 200)
  t.equal(spent, 2, 'one spend for a rejection of the current access token')
  t.ok(fresh.body.access_token === current.accessToken, 'the new tokens')
  t.ok((fresh.body.refresh_token as string).startsWith(PLACEHOLDER_PREFIX), 'never the real refresh token')
  t.equal(broker.placeholderCounters().placeholders.rotated, 2)
  // Two requests at once with one placeholder (two Codex processes, one auth.json): one answer, one rotation.
  const both = () => broker.refresh(body(fresh.body.refresh_token as string, 'proactive_expiry'), 'restricted')
  const [x, y] = await Promise.all([both(), both()])
  t.same([x.status, y.status], [200, 200])
  t.ok(typeof x.body.refresh_token === 'string' && x.body.refresh_token === y.body.refresh_token, 'the same new placeholder for both')
  t.equal(broker.placeholderCounters().placeholders.rotated, 3)
  t.equal(spent, 2, 'fresh current tokens: nothing spent')
})
