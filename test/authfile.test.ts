import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { formatLastRefresh, isRfc3339, lineColumn, parseAuthFile, sameCredentials, serializeAuthFile } from '../src/codex/authfile.js'
import type { AuthFile } from '../src/types.js'
import { fakeJwt } from './support/tokens.js'

const DIR = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, 'fixtures', 'auth')
const read = (name: string): string => readFileSync(join(DIR, name), 'utf8')
const files = readdirSync(DIR).sort()

/** String values of 10+ characters in a fixture: tokens and keys that no message may repeat. */
function secretsIn(text: string): string[] {
  return [...text.matchAll(/:\s*"([^"]{10,})"/g)].map((m) => m[1] as string)
}

interface BadCase {
  /** a fragment of the message */
  says: RegExp
  line?: number | null
  column?: number | null
}

// Every rejected variant of docs/codex-compat.md#what-codex-rejects, one fixture each; positions as Codex reports them.
const BAD: Record<string, BadCase> = {
  'bad-auth-last-refresh-yesterday.json': { says: /last_refresh is not an RFC 3339/, line: 10, column: 29 },
  'bad-auth-id-token-not-a-jwt.json': { says: /tokens\.id_token is not a JWT/, line: 5, column: 27 },
  'bad-auth-id-token-non-json-payload.json': { says: /tokens\.id_token is not a JWT/, line: 5 },
  'bad-auth-id-token-empty.json': { says: /tokens\.id_token is not a JWT/, line: 5, column: 18 },
  'bad-auth-id-token-padded.json': { says: /tokens\.id_token is not a JWT/, line: 5 },
  'bad-auth-id-token-email-number.json': { says: /tokens\.id_token is not a JWT/, line: 5 },
  'bad-auth-missing-refresh-token.json': { says: /tokens\.refresh_token is missing/, line: 8, column: 3 },
  'bad-auth-missing-access-token.json': { says: /tokens\.access_token is missing/, line: 8 },
  'bad-auth-missing-id-token.json': { says: /tokens\.id_token is missing/, line: 8 },
  'bad-auth-access-token-null.json': { says: /tokens\.access_token must be a string, found null/, line: 6 },
  'bad-auth-account-id-number.json': { says: /tokens\.account_id must be a string or null, found a number/, line: 8 },
  'bad-auth-unknown-auth-mode.json': { says: /unknown auth_mode value "daemon"/, line: 2, column: 23 },
  'bad-auth-auth-mode-number.json': { says: /auth_mode must be a string or null, found a number/, line: 2 },
  'bad-auth-api-key-number.json': { says: /OPENAI_API_KEY must be a string or null, found a number/, line: 3 },
  'bad-auth-tokens-string.json': { says: /tokens must be an object or null, found a string/, line: 4 },
  'bad-auth-top-level-array.json': { says: /top level must be a JSON object, found an array/, line: 1, column: 1 },
  'bad-auth-invalid-json.json': { says: /invalid JSON/, line: 11, column: 1 },
  'bad-auth-truncated.json': { says: /invalid JSON \(EOF/ },
  'bad-auth-empty.json': { says: /empty/, line: null, column: null },
  'bad-auth-duplicate-tokens.json': { says: /duplicate key tokens/, line: 11 },
  // serde_json cannot put a lone surrogate into a Rust String: the key itself, or a claim Codex reads.
  'bad-auth-api-key-lone-surrogate.json': { says: /invalid JSON \(unexpected end of hex escape/, line: 3 },
  'bad-auth-id-token-email-lone-surrogate.json': { says: /tokens\.id_token is not a JWT/, line: 5 },
}

t.test('every bad-auth fixture is rejected as Codex rejects it', async (t) => {
  const bad = files.filter((f) => f.startsWith('bad-auth-'))
  t.same(bad, Object.keys(BAD).sort(), 'each fixture has an expectation and each expectation a fixture')
  for (const name of bad) {
    const text = read(name)
    const r = parseAuthFile(text, '/home/u/.codex/auth.json')
    if (r.ok) {
      t.fail(`${name} was accepted`)
      continue
    }
    const want = BAD[name] as BadCase
    t.equal(r.problem.code, 'auth_unreadable', `${name}: code`)
    t.equal(r.problem.file, '/home/u/.codex/auth.json', `${name}: file`)
    t.match(r.problem.message, want.says, `${name}: message`)
    if (want.line !== undefined) t.equal(r.problem.line, want.line, `${name}: line`)
    if (want.column !== undefined) t.equal(r.problem.column, want.column, `${name}: column`)
    if (r.problem.line !== null) t.match(r.problem.message, `line ${r.problem.line} column ${r.problem.column}`, `${name}: position in message`)
    for (const s of secretsIn(text)) t.notOk(r.problem.message.includes(s), `${name}: message holds no secret`)
  }
})

type GoodCheck = (a: AuthFile) => void

t.test('every good fixture is accepted', async (t) => {
  const GOOD: Record<string, GoodCheck> = {
    'good-codex-written.json': (a) => {
      t.equal(a.authMode, 'chatgpt')
      t.equal(a.tokens?.accountId, 'acc-fake-1')
    },
    'good-extra-top-level.json': (a) => t.same(Object.keys(a.extra), ['my_daemon', 'version']),
    'good-extra-in-tokens.json': (a) => t.same(a.tokens?.extra, { scope: 'openid', nested: { a: true } }),
    'good-no-auth-mode.json': (a) => t.equal(a.authMode, null),
    'good-no-last-refresh.json': (a) => t.equal(a.lastRefresh, null),
    'good-no-api-key.json': (a) => t.equal(a.openaiApiKey, null),
    'good-account-id-missing.json': (a) => t.equal(a.tokens?.accountId, null),
    'good-account-id-null.json': (a) => t.equal(a.tokens?.accountId, null),
    'good-last-refresh-offset.json': (a) => t.equal(a.lastRefresh, '2026-11-26T12:00:00+01:00'),
    'good-access-token-opaque.json': (a) => t.equal(a.tokens?.accessToken, 'opaque-token'),
    'good-refresh-token-empty.json': (a) => t.equal(a.tokens?.refreshToken, ''),
    'good-apikey-only.json': (a) => {
      t.equal(a.authMode, 'apikey')
      t.equal(a.tokens, null)
      t.equal(a.openaiApiKey, 'sk-test-fake-key-0001')
    },
    'good-unsupported-mode.json': (a) => {
      t.equal(a.authMode, 'personalAccessToken')
      t.same(Object.keys(a.extra), ['personal_access_token'])
    },
    'good-tokens-null.json': (a) => {
      t.equal(a.tokens, null)
      t.equal(a.lastRefresh, null)
    },
    'good-compact-one-line.json': (a) => t.equal(a.authMode, 'chatgpt'),
  }
  const good = files.filter((f) => f.startsWith('good-'))
  t.same(good, Object.keys(GOOD).sort(), 'each fixture has an expectation and each expectation a fixture')
  for (const name of good) {
    const r = parseAuthFile(read(name), 'auth.json')
    if (!r.ok) {
      t.fail(`${name} rejected: ${r.problem.message}`)
      continue
    }
    ;(GOOD[name] as GoodCheck)(r.auth)
    // Writing and re-reading loses nothing.
    const again = parseAuthFile(serializeAuthFile(r.auth), 'auth.json')
    t.ok(again.ok, `${name}: our output parses`)
    if (again.ok) t.same(again.auth, r.auth, `${name}: round trip keeps every field`)
  }
})

t.test('a file Codex 0.171 wrote round-trips byte for byte', async (t) => {
  const text = read('good-codex-written.json')
  t.notOk(text.endsWith('\n'), 'fixture has no trailing newline, as Codex writes')
  const r = parseAuthFile(text, 'auth.json')
  t.ok(r.ok)
  if (r.ok) t.equal(serializeAuthFile(r.auth), text)
})

t.test('serializeAuthFile follows Codex key order and null rules', async (t) => {
  const idToken = fakeJwt({ email: 'a@example.com' })
  const auth: AuthFile = {
    authMode: null,
    openaiApiKey: null,
    tokens: { idToken, accessToken: 'opaque', refreshToken: 'rt', accountId: null, extra: { scope: 'x' } },
    lastRefresh: null,
    extra: { '7': 1, zeta: { b: [1, 2] } },
  }
  const out = serializeAuthFile(auth)
  t.equal(
    out,
    [
      '{',
      '  "OPENAI_API_KEY": null,',
      '  "tokens": {',
      `    "id_token": "${idToken}",`,
      '    "access_token": "opaque",',
      '    "refresh_token": "rt",',
      '    "account_id": null,',
      '    "scope": "x"',
      '  },',
      '  "7": 1,',
      '  "zeta": {',
      '    "b": [',
      '      1,',
      '      2',
      '    ]',
      '  }',
      '}',
    ].join('\n'),
  )
  t.equal(
    serializeAuthFile({ authMode: 'apikey', openaiApiKey: 'sk-test-x', tokens: null, lastRefresh: null, extra: {} }),
    '{\n  "auth_mode": "apikey",\n  "OPENAI_API_KEY": "sk-test-x"\n}',
  )
  t.equal(serializeAuthFile({ authMode: null, openaiApiKey: null, tokens: null, lastRefresh: null, extra: {} }), '{\n  "OPENAI_API_KEY": null\n}')
})

t.test('parser details', async (t) => {
  const idToken = fakeJwt({})
  const ok = (s: string): boolean => parseAuthFile(s, 'a').ok
  t.ok(ok(`{"tokens":{"id_token":"${idToken}","access_token":"a","refresh_token":"r"},"x":"\\u00e9\\ud83d\\ude00"}`), 'escapes')
  t.notOk(ok('{"x":"\\ud800"}'), 'lone surrogate escape rejected as serde_json does')
  t.notOk(ok('{"x":1e400}'), 'number out of range')
  t.notOk(ok('\uFEFF{}'), 'BOM rejected as serde_json does')
  t.notOk(ok('{} {}'), 'trailing characters')
  t.notOk(ok('{"a":"x\ty"}'), 'raw control character in a string')
  t.ok(ok('{}'), 'an empty object is a valid (logged-out) file')
  t.ok(ok(' {"OPENAI_API_KEY":null} \n'), 'whitespace around')
  t.notOk(ok('['.repeat(200) + ']'.repeat(200)), 'recursion limit')
  const proto = parseAuthFile('{"__proto__":{"polluted":true}}', 'a')
  t.ok(proto.ok)
  if (proto.ok) {
    t.ok(Object.hasOwn(proto.auth.extra, '__proto__'), '__proto__ kept as an own key')
    t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
  }
  t.same(lineColumn('ab\ncd', 4), { line: 2, column: 2 })
  t.same(lineColumn('é\nxé"', 4), { line: 2, column: 4 }, 'columns count UTF-8 bytes like serde_json')
})

t.test('isRfc3339 (chrono DateTime<Utc>)', async (t) => {
  const cases: [string, boolean][] = [
    ['2026-11-26T13:40:37.393253877Z', true],
    ['2025-08-06T20:41:36.232376Z', true],
    ['2026-11-26T12:00:00+01:00', true],
    ['2026-11-26T12:00:00Z', true],
    ['2026-11-26 12:00:00z', true],
    ['2026-11-26T12:00:00', false],
    ['2026-02-30T12:00:00Z', false],
    ['2026-13-01T12:00:00Z', false],
    ['yesterday', false],
    ['', false],
  ]
  for (const [s, want] of cases) t.equal(isRfc3339(s), want, s || '(empty)')
})

t.test('formatLastRefresh', async (t) => {
  const d = new Date(Date.UTC(2026, 10, 26, 13, 40, 37, 393))
  t.equal(formatLastRefresh(d), '2026-11-26T13:40:37.393000000Z')
  t.equal(formatLastRefresh(d, 393253877), '2026-11-26T13:40:37.393253877Z')
  t.equal(formatLastRefresh(new Date(Date.UTC(2026, 0, 1)), 5), '2026-01-01T00:00:00.000000005Z')
  t.ok(isRfc3339(formatLastRefresh(new Date())), 'Codex accepts what we write')
})

t.test('sameCredentials', async (t) => {
  const base: AuthFile = {
    authMode: 'chatgpt',
    openaiApiKey: null,
    tokens: { idToken: fakeJwt({}), accessToken: 'at-1', refreshToken: 'rt-1', accountId: 'acc', extra: {} },
    lastRefresh: null,
    extra: {},
  }
  const withTokens = (accessToken: string, refreshToken: string): AuthFile => ({
    ...base,
    tokens: { ...(base.tokens as NonNullable<AuthFile['tokens']>), accessToken, refreshToken },
  })
  const noTokens: AuthFile = { ...base, tokens: null }
  const cases: [string, AuthFile | null, AuthFile | null, boolean][] = [
    ['same tokens', base, withTokens('at-1', 'rt-1'), true],
    ['other access token', base, withTokens('at-2', 'rt-1'), false],
    ['other refresh token', base, withTokens('at-1', 'rt-2'), false],
    ['both null', null, null, true],
    ['null and no tokens', null, noTokens, true],
    ['tokens vs none', base, null, false],
    ['none vs tokens', noTokens, base, false],
    ['other fields ignored', base, { ...base, lastRefresh: '2026-11-26T12:00:00Z', extra: { a: 1 } }, true],
  ]
  for (const [name, a, b, want] of cases) t.equal(sameCredentials(a, b), want, name)
})
