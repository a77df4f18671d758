// getAuth never answers an expired token, or one below minValiditySeconds, whatever the
// credential store (docs/contract.md, getAuth). A store the daemon can write (file; auto falling
// back to auth.json with no Secret Service, as Codex does) is refreshed and served; one it cannot
// reach (keyring with no D-Bus session) or share (ephemeral) serves nothing and says why, without
// a refresh. The keyring store with a real Secret Service: test/store-keyring-daemon.test.ts.
// The real daemon bundle and the harness's provider. No token is ever printed: comparisons use
// t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome } from './support/daemon.js'
import { decodeJwtPayload, mintTokens } from './support/provider.js'
import { authFileFor, daemon, provider, refreshCalls, shape, writeAuthFile } from './support/refresh.js'
import { until } from './support/until.js'

/** No Secret Service here, whatever the machine has: a session bus address with no socket behind it. */
const NO_BUS = { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/codex-authd-test-bus' }

const STORES = ['file', 'auto', 'keyring', 'ephemeral'] as const
/** What getAuth answers for an expired login under each store: served (refreshed), or this error. */
const EXPECTED: Record<(typeof STORES)[number], 'served' | { code: number; problem: string }> = {
  file: 'served',
  auto: 'served',
  keyring: { code: -32006, problem: 'keyring_unreachable' },
  ephemeral: { code: -32001, problem: 'store_ephemeral' },
}

t.test('every store with an expired access token: the expired token is never served', async (t) => {
  // One provider, access tokens of 1 s: mint one login per store, then wait once for all to expire.
  const w = await provider(t, { ttl: { authorizationCode: 1, refreshToken: 3600 } })
  const p = w.provider
  const logins = await Promise.all(STORES.map(async (store) => ({ store, minted: await mintTokens(p) })))
  const lastExp = Math.max(...logins.map((l) => decodeJwtPayload(l.minted.accessToken).exp as number))
  await until('the minted access tokens to expire', () => Date.now() > lastExp * 1000 + 50, 5000)
  p.setTtl({ authorizationCode: 3600 })

  for (const { store, minted } of logins) {
    t.test(store, async (t) => {
      const home = await makeHome()
      fs.writeFileSync(path.join(home, 'config.toml'), `cli_auth_credentials_store = "${store}"\n`)
      writeAuthFile(home, authFileFor(minted))
      const before = refreshCalls(p)
      const d = await daemon(t, home, p, { env: NO_BUS })
      const c = await connect(t, d)
      for (const params of [{}, { minValiditySeconds: 0 }]) {
        const res = await c.call('getAuth', params)
        t.notOk(res.result?.token === minted.accessToken, `the expired token is not served (${JSON.stringify(params)}): ${shape(res)}`)
        const want = EXPECTED[store]
        if (want === 'served') {
          t.ok(typeof res.result?.token === 'string', `refreshed and served: ${shape(res)}`)
          continue
        }
        t.equal(res.error?.code, want.code, shape(res))
        t.equal(res.error?.data?.problem, want.problem, 'the error names why nothing is served')
      }
      if (EXPECTED[store] !== 'served') t.equal(refreshCalls(p) - before, 0, 'no refresh for a store that serves nothing')
    })
  }
})

t.test('auto with no Secret Service: a token valid for less than minValiditySeconds is refreshed into auth.json, as Codex falls back to it', async (t) => {
  const w = await provider(t, { ttl: { authorizationCode: 1800, refreshToken: 3600 } })
  const minted = await mintTokens(w.provider)
  const home = await makeHome()
  fs.writeFileSync(path.join(home, 'config.toml'), 'cli_auth_credentials_store = "auto"\n')
  writeAuthFile(home, authFileFor(minted))
  const d = await daemon(t, home, w.provider, { env: NO_BUS })
  const c = await connect(t, d)
  const ok = await c.call('getAuth', { minValiditySeconds: 600 })
  t.ok(ok.result?.token === minted.accessToken, `valid for 30 min, 10 min asked: served as it is (${shape(ok)})`)
  const before = refreshCalls(w.provider)
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.ok(typeof res.result?.token === 'string' && res.result.token !== minted.accessToken, `40 min asked: a new token (${shape(res)})`)
  t.equal(refreshCalls(w.provider) - before, 1, 'one refresh')
  // The answer may come before the commit lands (the journal holds it meanwhile).
  const inFile = () => JSON.parse(fs.readFileSync(path.join(home, 'auth.json'), 'utf8')).tokens?.access_token === res.result?.token
  t.ok(await until('the refresh in auth.json', inFile), 'the refresh is written to auth.json (the fallback Codex reads)')
})
