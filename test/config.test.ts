import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigOverrideError, parseConfigOverride, resolveSettings } from '../src/codex/config.js'
import { DEFAULT_SETTINGS } from '../src/types.js'
import type { Settings } from '../src/types.js'

const DIR = join(import.meta.dirname, 'fixtures', 'config')
const FILE = '/home/u/.codex/config.toml'
const defaults: Settings = { ...DEFAULT_SETTINGS }

t.test('parseConfigOverride (Codex -c key=value)', async (t) => {
  const cases: [string, string[], unknown][] = [
    ['preferred_auth_method="apikey"', ['preferred_auth_method'], 'apikey'],
    ['preferred_auth_method=apikey', ['preferred_auth_method'], 'apikey'],
    [' preferred_auth_method = apikey ', ['preferred_auth_method'], 'apikey'],
    ['a.b.c=1', ['a', 'b', 'c'], 1],
    ['x=true', ['x'], true],
    ['x=[1, 2]', ['x'], [1, 2]],
    ['x=["ws-1","ws-2"]', ['x'], ['ws-1', 'ws-2']],
    ['x=a=b', ['x'], 'a=b'],
    ['x=', ['x'], ''],
    ['x="unterminated', ['x'], '"unterminated'],
  ]
  for (const [arg, path, value] of cases) {
    const o = parseConfigOverride(arg)
    t.same(o.path, path, `${arg}: path`)
    t.same(o.value, value, `${arg}: value`)
    t.equal(o.raw, arg, `${arg}: raw`)
  }
  const inline = parseConfigOverride('x={a = 1}')
  t.equal((inline.value as Record<string, unknown>).a, 1, 'inline table')
  for (const bad of ['no-equals', '=value', '  =x']) {
    t.throws(() => parseConfigOverride(bad), ConfigOverrideError, `${JSON.stringify(bad)} throws`)
    try {
      parseConfigOverride(bad)
    } catch (err) {
      t.equal((err as ConfigOverrideError).code, 'config_override_invalid')
      t.match((err as Error).message, bad.trim() === '' ? /override/ : bad, 'names the argument')
    }
  }
})

t.test('resolveSettings: valid files and overrides', async (t) => {
  const o = parseConfigOverride
  const cases: [string, string | null, string[], Partial<Settings>][] = [
    ['no file', null, [], {}],
    ['empty file', '', [], {}],
    ['unrelated keys ignored', 'model = "o4"\n[mcp_servers.x]\ncommand = "y"\n', [], {}],
    ['preferred apikey', 'preferred_auth_method = "apikey"\n', [], { preferredAuthMethod: 'apikey' }],
    ['preferred chatgpt', 'preferred_auth_method = "chatgpt"\n', [], { preferredAuthMethod: 'chatgpt' }],
    ['forced api', 'forced_login_method = "api"\n', [], { forcedLoginMethod: 'api' }],
    ['forced chatgpt', 'forced_login_method = "chatgpt"\n', [], { forcedLoginMethod: 'chatgpt' }],
    ['workspace string', 'forced_chatgpt_workspace_id = "ws-1"\n', [], { forcedChatgptWorkspaceIds: ['ws-1'] }],
    ['workspace list', 'forced_chatgpt_workspace_id = ["ws-1", "ws-2"]\n', [], { forcedChatgptWorkspaceIds: ['ws-1', 'ws-2'] }],
    ['store file', 'cli_auth_credentials_store = "file"\n', [], { credentialsStore: 'file' }],
    ['override beats file', 'preferred_auth_method = "chatgpt"\n', ['preferred_auth_method="apikey"'], { preferredAuthMethod: 'apikey' }],
    ['unquoted override', null, ['preferred_auth_method=apikey'], { preferredAuthMethod: 'apikey' }],
    ['later override wins', null, ['forced_login_method=api', 'forced_login_method=chatgpt'], { forcedLoginMethod: 'chatgpt' }],
    ['override list', null, ['forced_chatgpt_workspace_id=["a","b"]'], { forcedChatgptWorkspaceIds: ['a', 'b'] }],
    ['table keys are not top-level keys', '[profiles.p]\npreferred_auth_method = "apikey"\n', [], {}],
  ]
  for (const [name, text, args, want] of cases) {
    const r = resolveSettings(text, FILE, args.map((a) => o(a)))
    t.same(r.settings, { ...defaults, ...want }, `${name}: settings`)
    t.same(r.problems, [], `${name}: no problems`)
  }
})

interface BadConfig {
  settings: Partial<Settings>
  says: RegExp
  line: number | null
  column: number | null
}

// One fixture per rejected config.toml; the rest of the file still applies when one key is bad.
const BAD: Record<string, BadConfig> = {
  'bad-config-missing-value.toml': { settings: {}, says: /invalid value at line 2 column 8\); using defaults/, line: 2, column: 8 },
  'bad-config-duplicate-key.toml': { settings: {}, says: /redefine.*using defaults/, line: 2, column: 1 },
  'bad-config-unterminated-string.toml': { settings: {}, says: /control characters.*using defaults/, line: 1, column: 12 },
  'bad-config-unclosed-table.toml': { settings: {}, says: /illegal character in key.*using defaults/, line: 2, column: 5 },
  'bad-config-preferred-value.toml': {
    settings: { forcedLoginMethod: 'api' },
    says: /preferred_auth_method = "password" is not valid.*using "chatgpt"/,
    line: 3,
    column: 25,
  },
  'bad-config-preferred-bool.toml': { settings: {}, says: /preferred_auth_method = true is not valid/, line: 1, column: 25 },
  'bad-config-forced-value.toml': {
    settings: { preferredAuthMethod: 'apikey' },
    says: /forced_login_method = "chatgpt-only" is not valid.*no forced method/,
    line: 1,
    column: 23,
  },
  'bad-config-workspace-number.toml': { settings: {}, says: /forced_chatgpt_workspace_id = 42 is not valid/, line: 1, column: 31 },
  'bad-config-workspace-mixed-list.toml': { settings: {}, says: /forced_chatgpt_workspace_id = an array is not valid/, line: 1, column: 31 },
  'bad-config-store-value.toml': {
    settings: { forcedLoginMethod: 'api' },
    says: /cli_auth_credentials_store = "vault" is not valid.*using "file"/,
    line: 1,
    column: 30,
  },
}

t.test('every bad-config fixture gives config_invalid and usable settings', async (t) => {
  const files = readdirSync(DIR).filter((f) => f.startsWith('bad-config-')).sort()
  t.same(files, Object.keys(BAD).sort(), 'each fixture has an expectation and each expectation a fixture')
  for (const name of files) {
    const want = BAD[name] as BadConfig
    const r = resolveSettings(readFileSync(join(DIR, name), 'utf8'), FILE, [])
    t.same(r.settings, { ...defaults, ...want.settings }, `${name}: settings`)
    t.equal(r.problems.length, 1, `${name}: one problem`)
    const p = r.problems[0]
    if (!p) continue
    t.equal(p.code, 'config_invalid', `${name}: code`)
    t.equal(p.file, FILE, `${name}: file`)
    t.match(p.message, want.says, `${name}: message`)
    t.equal(p.line, want.line, `${name}: line`)
    t.equal(p.column, want.column, `${name}: column`)
  }
})

t.test('a broken file still takes -c overrides', async (t) => {
  const r = resolveSettings('model =\n', FILE, [parseConfigOverride('preferred_auth_method=apikey')])
  t.equal(r.settings.preferredAuthMethod, 'apikey')
  t.equal(r.problems[0]?.code, 'config_invalid')
})

t.test('an invalid override names -c, not the file', async (t) => {
  const r = resolveSettings('preferred_auth_method = "apikey"\n', FILE, [parseConfigOverride('preferred_auth_method=both')])
  t.equal(r.settings.preferredAuthMethod, 'chatgpt', 'falls back to the default')
  t.same(
    r.problems.map((p) => [p.code, p.file, p.line, p.column]),
    [['config_invalid', '-c', null, null]],
  )
  t.match(r.problems[0]?.message, /from -c/)
  const nested = resolveSettings(null, FILE, [parseConfigOverride('forced_login_method.x=1')])
  t.equal(nested.settings.forcedLoginMethod, null, 'a dotted override that makes the key a table is invalid')
  t.match(nested.problems[0]?.message, /forced_login_method = a table/)
})

t.test('stores: file, keyring and auto are served without a problem; ephemeral is store_ephemeral', async (t) => {
  for (const store of ['file', 'keyring', 'auto']) {
    const r = resolveSettings(`model = "o4"\ncli_auth_credentials_store = "${store}"\n`, FILE, [])
    t.equal(r.settings.credentialsStore, store, `${store}: kept`)
    t.same(r.problems, [], `${store}: no problem`)
  }
  const r = resolveSettings(`model = "o4"\ncli_auth_credentials_store = "ephemeral"\n`, FILE, [])
  t.equal(r.settings.credentialsStore, 'ephemeral')
  t.same(r.problems.map((p) => [p.code, p.file, p.line, p.column]), [['store_ephemeral', FILE, 2, 30]], 'problem with position')
  t.match(r.problems[0]?.message, /only inside the Codex process/)
  const viaOverride = resolveSettings(null, FILE, [parseConfigOverride('cli_auth_credentials_store=ephemeral')])
  t.same(viaOverride.problems.map((p) => [p.code, p.file, p.line]), [['store_ephemeral', '-c', null]])
})
