import t from 'tap'
import type { Test } from 'tap'
import { parseConfigOverride, resolveSettings } from '../src/codex/config.js'
import { resolveAuth } from '../src/codex/resolve.js'
import type { ResolveInput } from '../src/codex/resolve.js'
import { DEFAULT_SETTINGS } from '../src/types.js'
import type { AuthFile, Problem, ProblemCode, Resolved, Settings } from '../src/types.js'
import { fakeJwt } from './support/tokens.js'

const AUTH = 'https://api.openai.com/auth'
const FILE_KEY = 'sk-test-file-key-0001'
const ENV_KEY = 'sk-test-env-key-0002'

function idToken(claims: { email?: string; plan?: string; account?: string } = {}): string {
  return fakeJwt({
    email: claims.email ?? 'user@example.com',
    [AUTH]: { chatgpt_plan_type: claims.plan ?? 'plus', chatgpt_account_id: claims.account ?? 'acc-fake-1' },
  })
}

interface FileSpec {
  mode?: string | null
  key?: string | null
  tokens?: boolean
  email?: string
  plan?: string
  account?: string
  /** tokens.account_id; defaults to the id_token's account */
  accountId?: string | null
}

function file(spec: FileSpec): AuthFile {
  const account = spec.account ?? 'acc-fake-1'
  return {
    authMode: spec.mode ?? null,
    openaiApiKey: spec.key ?? null,
    tokens: spec.tokens
      ? {
          idToken: idToken({ email: spec.email, plan: spec.plan, account }),
          accessToken: fakeJwt({ exp: 1795009237, iat: 1794145237 }),
          refreshToken: 'rt-fake-refresh-0001',
          accountId: spec.accountId === undefined ? account : spec.accountId,
          extra: {},
        }
      : null,
    lastRefresh: '2026-11-26T13:40:37.393253877Z',
    extra: {},
  }
}

type Want =
  | { kind: 'apikey'; source: 'env' | 'auth.json'; apiKey?: string }
  | { kind: 'chatgpt' }
  | { kind: 'none' }
  | { kind: 'forbidden'; says: RegExp }
  | { kind: 'unsupported'; mode: string }

interface Case {
  name: string
  env?: string | null
  settings?: Partial<Settings>
  auth: AuthFile | null
  want: Want
  problems?: ProblemCode[]
}

const chatgptFile = file({ mode: 'chatgpt', tokens: true })
const bothFile = file({ mode: 'chatgpt', key: FILE_KEY, tokens: true })
const legacyBoth = (plan: string, email = 'user@example.com'): AuthFile => file({ key: FILE_KEY, tokens: true, plan, email })

const CASES: Case[] = [
  // docs/codex-compat.md#which-credential-is-served, rule 1
  { name: 'rule 1: preferred apikey and a key in auth.json beats tokens', settings: { preferredAuthMethod: 'apikey' }, auth: bothFile, want: { kind: 'apikey', source: 'auth.json', apiKey: FILE_KEY } },
  { name: 'rule 1: preferred apikey uses the env key when auth.json has none', env: ENV_KEY, settings: { preferredAuthMethod: 'apikey' }, auth: chatgptFile, want: { kind: 'apikey', source: 'env', apiKey: ENV_KEY } },
  { name: 'rule 1: preferred apikey without any key falls through to tokens', settings: { preferredAuthMethod: 'apikey' }, auth: chatgptFile, want: { kind: 'chatgpt' } },
  // rule 2
  { name: 'rule 2: auth_mode apikey with a key serves it even when tokens exist', auth: file({ mode: 'apikey', key: FILE_KEY, tokens: true }), want: { kind: 'apikey', source: 'auth.json' } },
  { name: 'rule 2: auth_mode apikey with only the env key serves the env key', env: ENV_KEY, auth: file({ mode: 'apikey', tokens: true }), want: { kind: 'apikey', source: 'env' } },
  { name: 'rule 2: auth_mode apikey without any key falls through to tokens', auth: file({ mode: 'apikey', tokens: true }), want: { kind: 'chatgpt' } },
  // rule 3
  { name: 'rule 3: tokens are served by default', auth: chatgptFile, want: { kind: 'chatgpt' } },
  { name: 'rule 3: tokens beat the env key', env: ENV_KEY, auth: chatgptFile, want: { kind: 'chatgpt' } },
  { name: 'rule 3: tokens beat a key in auth.json when auth_mode is chatgpt', auth: file({ mode: 'chatgpt', key: FILE_KEY, tokens: true, plan: 'enterprise' }), want: { kind: 'chatgpt' } },
  { name: 'rule 3: auth_mode absent, key and plus plan: tokens', auth: legacyBoth('plus'), want: { kind: 'chatgpt' } },
  { name: 'rule 3: auth_mode absent, key and team plan: tokens', auth: legacyBoth('team'), want: { kind: 'chatgpt' } },
  ...['enterprise', 'hc', 'edu', 'education', 'business', 'Enterprise'].map(
    (plan): Case => ({ name: `rule 3 exception: auth_mode absent, key in auth.json, plan ${plan}: API key`, auth: legacyBoth(plan), want: { kind: 'apikey', source: 'auth.json' } }),
  ),
  { name: 'rule 3 exception: not for @openai.com emails', auth: legacyBoth('enterprise', 'someone@openai.com'), want: { kind: 'chatgpt' } },
  { name: 'rule 3 exception: not when only the env holds a key', env: ENV_KEY, auth: file({ tokens: true, plan: 'enterprise' }), want: { kind: 'chatgpt' } },
  { name: 'rule 3 exception: not when the plan is missing', auth: file({ key: FILE_KEY, tokens: true, plan: '' }), want: { kind: 'chatgpt' } },
  // rule 4
  { name: 'rule 4: only a key in auth.json', auth: file({ mode: 'apikey', key: FILE_KEY }), want: { kind: 'apikey', source: 'auth.json' } },
  { name: 'rule 4: only the env key, no auth.json', env: ENV_KEY, auth: null, want: { kind: 'apikey', source: 'env' } },
  { name: 'rule 4: auth_mode chatgpt without tokens falls through to its key', auth: file({ mode: 'chatgpt', key: FILE_KEY }), want: { kind: 'apikey', source: 'auth.json' } },
  { name: 'key choice: auth.json key wins over the env key', env: ENV_KEY, auth: file({ key: FILE_KEY }), want: { kind: 'apikey', source: 'auth.json', apiKey: FILE_KEY } },
  { name: 'key choice: a blank auth.json key gives way to the env key', env: ENV_KEY, auth: file({ key: '   ' }), want: { kind: 'apikey', source: 'env', apiKey: ENV_KEY } },
  { name: 'key choice: keys are served trimmed', env: ` ${ENV_KEY}\n`, auth: null, want: { kind: 'apikey', source: 'env', apiKey: ENV_KEY } },
  // rule 5
  { name: 'rule 5: nothing at all is not logged in', auth: null, want: { kind: 'none' } },
  { name: 'rule 5: empty auth.json and a blank env key', env: '  ', auth: file({}), want: { kind: 'none' } },
  // forced_login_method = "api"
  { name: 'forced api: tokens and key serve the key', settings: { forcedLoginMethod: 'api' }, auth: bothFile, want: { kind: 'apikey', source: 'auth.json' } },
  { name: 'forced api: tokens and env key serve the env key', env: ENV_KEY, settings: { forcedLoginMethod: 'api' }, auth: chatgptFile, want: { kind: 'apikey', source: 'env' } },
  { name: 'forced api: only tokens is a policy conflict', settings: { forcedLoginMethod: 'api' }, auth: chatgptFile, want: { kind: 'forbidden', says: /API key login is required/ }, problems: ['policy_conflict'] },
  { name: 'forced api: nothing is not logged in', settings: { forcedLoginMethod: 'api' }, auth: null, want: { kind: 'none' } },
  // forced_login_method = "chatgpt"
  { name: 'forced chatgpt: beats preferred apikey', settings: { forcedLoginMethod: 'chatgpt', preferredAuthMethod: 'apikey' }, auth: bothFile, want: { kind: 'chatgpt' } },
  { name: 'forced chatgpt: beats auth_mode apikey when tokens exist', settings: { forcedLoginMethod: 'chatgpt' }, auth: file({ mode: 'apikey', key: FILE_KEY, tokens: true }), want: { kind: 'chatgpt' } },
  { name: 'forced chatgpt: beats the account-type exception', settings: { forcedLoginMethod: 'chatgpt' }, auth: legacyBoth('enterprise'), want: { kind: 'chatgpt' } },
  { name: 'forced chatgpt: only a key in auth.json is a policy conflict', settings: { forcedLoginMethod: 'chatgpt' }, auth: file({ mode: 'apikey', key: FILE_KEY }), want: { kind: 'forbidden', says: /ChatGPT login is required.*from auth\.json/ }, problems: ['policy_conflict'] },
  { name: 'forced chatgpt: only the env key is a policy conflict', env: ENV_KEY, settings: { forcedLoginMethod: 'chatgpt' }, auth: null, want: { kind: 'forbidden', says: /environment variable/ }, problems: ['policy_conflict'] },
  { name: 'forced chatgpt: nothing is not logged in', settings: { forcedLoginMethod: 'chatgpt' }, auth: null, want: { kind: 'none' } },
  // forced_chatgpt_workspace_id
  { name: 'workspace: matching account serves tokens', settings: { forcedChatgptWorkspaceIds: ['ws-a', 'acc-fake-1'] }, auth: chatgptFile, want: { kind: 'chatgpt' } },
  { name: 'workspace: mismatch is a policy conflict naming both', settings: { forcedChatgptWorkspaceIds: ['ws-a', 'ws-b'] }, auth: chatgptFile, want: { kind: 'forbidden', says: /restricted to workspace\(s\) ws-a, ws-b, but current credentials belong to acc-fake-1/ }, problems: ['policy_conflict'] },
  { name: 'workspace: account_id missing falls back to the id_token claim', settings: { forcedChatgptWorkspaceIds: ['acc-fake-1'] }, auth: file({ tokens: true, accountId: null }), want: { kind: 'chatgpt' } },
  { name: 'workspace: no account id anywhere is a policy conflict', settings: { forcedChatgptWorkspaceIds: ['ws-a'] }, auth: file({ tokens: true, accountId: null, account: '' }), want: { kind: 'forbidden', says: /restricted to workspace\(s\) ws-a, but current credentials carry no workspace id/ }, problems: ['policy_conflict'] },
  { name: 'workspace: a mismatch does not fall through to a key', settings: { forcedChatgptWorkspaceIds: ['ws-a'] }, auth: bothFile, want: { kind: 'forbidden', says: /restricted to workspace/ }, problems: ['policy_conflict'] },
  { name: 'workspace: an API key is exempt', settings: { forcedChatgptWorkspaceIds: ['ws-a'], preferredAuthMethod: 'apikey' }, auth: bothFile, want: { kind: 'apikey', source: 'auth.json' } },
  // auth_mode values Codex knows that we do not serve
  ...['chatgptAuthTokens', 'headers', 'agentIdentity', 'personalAccessToken', 'bedrockApiKey', 'bedrockAccessKeys'].map(
    (mode): Case => ({ name: `unsupported mode ${mode}`, auth: file({ mode, tokens: true }), want: { kind: 'unsupported', mode }, problems: ['mode_unsupported'] }),
  ),
  { name: 'unsupported mode wins over an env key by default', env: ENV_KEY, auth: file({ mode: 'headers' }), want: { kind: 'unsupported', mode: 'headers' }, problems: ['mode_unsupported'] },
  { name: 'unsupported mode gives way to rule 1 (preferred apikey with a key)', env: ENV_KEY, settings: { preferredAuthMethod: 'apikey' }, auth: file({ mode: 'headers' }), want: { kind: 'apikey', source: 'env' }, problems: ['mode_unsupported'] },
  { name: 'unsupported mode: rule 1 is off when forced chatgpt', env: ENV_KEY, settings: { preferredAuthMethod: 'apikey', forcedLoginMethod: 'chatgpt' }, auth: file({ mode: 'headers' }), want: { kind: 'unsupported', mode: 'headers' }, problems: ['mode_unsupported'] },
]

function input(c: Pick<Case, 'env' | 'settings' | 'auth'>): ResolveInput {
  return { envApiKey: c.env ?? null, settings: { ...DEFAULT_SETTINGS, ...c.settings }, auth: c.auth }
}

function check(t: Test, c: Case, resolved: Resolved, problems: Problem[]): void {
  t.equal(resolved.kind, c.want.kind, 'kind')
  if (resolved.kind === 'apikey' && c.want.kind === 'apikey') {
    t.equal(resolved.source, c.want.source, 'source')
    if (c.want.apiKey) t.ok(resolved.apiKey === c.want.apiKey, 'the expected key')
  }
  if (resolved.kind === 'forbidden' && c.want.kind === 'forbidden') t.match(resolved.message, c.want.says, 'message')
  if (resolved.kind === 'unsupported' && c.want.kind === 'unsupported') t.equal(resolved.mode, c.want.mode, 'mode')
  t.same(problems.map((p) => p.code), c.problems ?? [], 'problems')
  const texts = [...problems.map((p) => p.message), resolved.kind === 'forbidden' ? resolved.message : '']
  const secrets = [FILE_KEY, ENV_KEY, 'rt-fake-refresh-0001', c.auth?.tokens?.idToken, c.auth?.tokens?.accessToken].filter(Boolean) as string[]
  t.ok(texts.every((m) => secrets.every((s) => !m.includes(s))), 'no secret in any message')
}

t.test('docs/codex-compat.md#which-credential-is-served, case by case', async (t) => {
  for (const c of CASES) {
    t.test(c.name, async (t) => {
      const { resolved, problems } = resolveAuth(input(c))
      check(t, c, resolved, problems)
    })
  }
})

t.test('a chatgpt result carries the claims', async (t) => {
  const { resolved } = resolveAuth(input({ auth: file({ tokens: true, plan: 'pro', email: 'a@example.com' }) }))
  if (resolved.kind !== 'chatgpt') return t.fail('expected chatgpt')
  t.same(resolved.idClaims, { email: 'a@example.com', planType: 'pro', userId: null, accountId: 'acc-fake-1' })
  t.same(resolved.accessClaims, { exp: 1795009237, iat: 1794145237 })
  t.equal(resolved.source, 'auth.json')
  t.equal(resolved.tokens.refreshToken, 'rt-fake-refresh-0001')
})

// Codex's authentication docs, "Forcing a specific auth method (advanced)", one case per sentence
// (the rules as implemented: docs/codex-compat.md#which-credential-is-served).
t.test('Codex docs: Forcing a specific auth method', async (t) => {
  const viaToml = (toml: string, args: string[] = []): Settings => resolveSettings(toml, 'config.toml', args.map(parseConfigOverride)).settings
  const run = (settings: Settings, auth: AuthFile | null, env: string | null = null): Resolved =>
    resolveAuth({ envApiKey: env, settings, auth }).resolved

  t.test('"You can explicitly choose which authentication Codex should prefer when both are available."', async (t) => {
    t.equal(run(viaToml('preferred_auth_method = "apikey"\n'), bothFile).kind, 'apikey')
    t.equal(run(viaToml('preferred_auth_method = "chatgpt"\n'), bothFile).kind, 'chatgpt')
  })
  t.test('"To always use your API key (even when ChatGPT auth exists), set: preferred_auth_method = "apikey""', async (t) => {
    const r = run(viaToml('preferred_auth_method = "apikey"\n'), bothFile)
    t.equal(r.kind, 'apikey')
    const envOnly = run(viaToml('preferred_auth_method = "apikey"\n'), chatgptFile, ENV_KEY)
    t.equal(envOnly.kind, 'apikey', 'also with the key from the environment')
  })
  t.test('"Or override ad-hoc via CLI: codex --config preferred_auth_method="apikey""', async (t) => {
    // The shell strips the quotes; both spellings must work.
    for (const arg of ['preferred_auth_method="apikey"', 'preferred_auth_method=apikey']) {
      const s = viaToml('preferred_auth_method = "chatgpt"\n', [arg])
      t.equal(run(s, bothFile).kind, 'apikey', arg)
    }
  })
  t.test('"To prefer ChatGPT auth (default), set: preferred_auth_method = "chatgpt""', async (t) => {
    t.equal(run(viaToml('preferred_auth_method = "chatgpt"\n'), bothFile).kind, 'chatgpt')
    t.equal(run(viaToml(''), bothFile).kind, 'chatgpt', 'and it is the default')
  })
  t.test('"When preferred_auth_method = "apikey" and an API key is available, the login screen is skipped."', async (t) => {
    const r = run(viaToml('preferred_auth_method = "apikey"\n'), null, ENV_KEY)
    t.equal(r.kind, 'apikey', 'an env key alone is a usable credential: no login needed')
  })
  t.test('"When preferred_auth_method = "chatgpt" (default), Codex prefers ChatGPT auth if present"', async (t) => {
    t.equal(run(viaToml(''), bothFile, ENV_KEY).kind, 'chatgpt')
  })
  t.test('"if only an API key is present, it will use the API key."', async (t) => {
    t.equal(run(viaToml(''), file({ mode: 'apikey', key: FILE_KEY })).kind, 'apikey')
    t.equal(run(viaToml(''), null, ENV_KEY).kind, 'apikey')
  })
  t.test('"Certain account types may also require API-key mode."', async (t) => {
    t.equal(run(viaToml(''), legacyBoth('enterprise')).kind, 'apikey')
    t.equal(run(viaToml(''), legacyBoth('plus')).kind, 'chatgpt')
  })
  t.test('"To check which auth method is being used during a session, use the /status command" (the result says kind and source)', async (t) => {
    const r = run(viaToml(''), null, ENV_KEY)
    t.same(r.kind === 'apikey' ? [r.kind, r.source] : null, ['apikey', 'env'])
  })
})
