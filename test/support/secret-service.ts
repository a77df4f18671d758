// A private, real Secret Service for tests (docs/testing.md#the-secret-service): a dbus-daemon of
// its own on a PATH socket, and gnome-keyring-daemon on it with a fresh, unlocked `login`
// collection that never prompts. The way docs/keyring.md measured Codex 0.171.0's keyring store.
//
//  - The bus listens on `unix:path=<tmp>/bus`: a file-system object, so Codex inside `unshare -n`
//    (test/support/codex.ts) and the daemon outside reach the same bus.
//  - The bus has its own configuration with no service directories: nothing is ever
//    bus-activated, so a call after freeze() or stop() waits or fails, it never starts a second
//    keyring behind the test's back.
//  - Readiness is the bus printing its address, then the `default` alias resolving to a
//    collection (polled with until(): the name being owned is not an event a test can wait on).
//  - freeze()/thaw() SIGSTOP/SIGCONT gnome-keyring-daemon: the bus still accepts every call, none
//    is answered (the hang of docs/keyring.md, openai/codex#41031).
//  - items() reads back with busctl (systemd, already a test package: JSON output, no parsing of
//    dbus-send's text) and `secret-tool lookup` (libsecret-tools) for the secret, which needs a
//    Secret Service session that only a single connection can hold.
//
// Secrets never go on a command line: secret-tool takes them on stdin, and they are registered
// with test/support/secrets.ts so a leak into the daemon's output fails the test.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { parseAuthFile, serializeAuthFile } from '../../src/codex/authfile.js'
import type { AuthFile } from '../../src/types.js'
import { startCodexWorld, type CodexWorld } from './codex.js'
import { startProvider, type TestProvider } from './provider.js'
import { startDaemon, stopAtTeardown, tempDir, type RunningDaemon } from './daemon.js'
import { registerAuthJsonSecrets } from './secrets.js'
import { until } from './until.js'

/** The Secret Service entry Codex 0.171.0 keeps a login in (docs/keyring.md#the-entry). */
export const CODEX_SERVICE = 'Codex Auth'
export const CODEX_TARGET = 'default'

/** Codex's account for a CODEX_HOME: `cli|` + 16 hex of SHA-256 of its canonical path (docs/keyring.md#the-entry). */
export function codexKeyringAccount(codexHome: string): string {
  let canonical = codexHome
  try {
    canonical = fs.realpathSync(codexHome)
  } catch {
    // Codex hashes the raw path when canonicalize() fails
  }
  return `cli|${createHash('sha256').update(canonical).digest('hex').slice(0, 16)}`
}

/** The attributes of Codex's entry for a CODEX_HOME, as Codex searches for it first. */
export function codexEntryAttributes(codexHome: string): { service: string; username: string; target: string } {
  return { service: CODEX_SERVICE, username: codexKeyringAccount(codexHome), target: CODEX_TARGET }
}

/**
 * Sets `cli_auth_credentials_store` in `$codexHome/config.toml` (which Codex and the daemon both
 * read), keeping the other top-level keys (test/support/codex.ts writes only top-level keys).
 */
export function useCodexStore(codexHome: string, store: 'file' | 'keyring' | 'auto'): void {
  const file = path.join(codexHome, 'config.toml')
  let text = ''
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    // no config yet
  }
  const kept = text.split('\n').filter((l) => l.trim() !== '' && !/^\s*cli_auth_credentials_store\s*=/.test(l))
  fs.writeFileSync(file, [`cli_auth_credentials_store = "${store}"`, ...kept, ''].join('\n'))
}

/** The entry's payload for an auth.json: the same structure as compact JSON, as Codex stores it. */
export function entryPayload(auth: AuthFile): string {
  return JSON.stringify(JSON.parse(serializeAuthFile(auth)))
}

/** The auth.json structure an entry holds (throws naming the item when it does not parse). */
export function entryAuth(item: SecretItem | null): AuthFile {
  if (item?.secret == null) throw new Error('no readable Secret Service entry')
  registerAuthJsonSecrets(item.secret, 'Secret Service entry')
  const parsed = parseAuthFile(item.secret, `Secret Service item ${item.path}`)
  if (!parsed.ok) throw new Error(parsed.problem.message)
  return parsed.auth
}

/**
 * A daemon on `home` reaching this Secret Service (env: DBUS_SESSION_BUS_ADDRESS and any knob),
 * refreshing against the world's provider, stopped at teardown.
 */
export async function keyringDaemon(
  t: { teardown(fn: () => unknown): void },
  world: CodexWorld,
  home: string,
  env: Record<string, string>,
): Promise<RunningDaemon> {
  return stopAtTeardown(t, await startDaemon({ home, env, args: ['--issuer', world.provider.issuer, '--issuer-kind', 'openai'] }))
}

export interface SecretItem {
  /** D-Bus object path of the item */
  path: string
  label: string
  attributes: Record<string, string>
  /** the stored secret as text; null for an item in a locked collection */
  secret: string | null
}

export interface SecretService {
  /** What a process needs to reach this Secret Service (pass to the daemon and to Codex). */
  readonly env: { DBUS_SESSION_BUS_ADDRESS: string }
  readonly busAddress: string
  /** gnome-keyring-daemon's pid (the process freeze() stops); null on a bus without one */
  readonly keyringPid: number | null
  readonly busPid: number
  /**
   * SIGSTOP gnome-keyring-daemon: calls are queued by the bus and never answered. Resolves once
   * the kernel reports it stopped (a signal is delivered asynchronously).
   */
  freeze(): Promise<void>
  /** SIGCONT: the queued calls are answered. Resolves once it is running again. */
  thaw(): Promise<void>
  readonly frozen: boolean
  /** Whether a call to the Secret Service (ReadAlias) is answered within `timeoutMs`. */
  answers(timeoutMs?: number): Promise<boolean>
  /** Items whose attributes include `filter` (default: every item of Codex's service), with their secrets. */
  items(filter?: Record<string, string>): Promise<SecretItem[]>
  /** Codex's entry for a CODEX_HOME (exact attributes), or null. */
  codexEntry(codexHome: string): Promise<SecretItem | null>
  /** Creates or replaces the item with these attributes (secret on stdin), as another writer would. */
  store(attributes: Record<string, string>, secret: string, label?: string): Promise<void>
  /** Writes Codex's entry for a CODEX_HOME: the compact JSON payload Codex itself would store. */
  storeCodexEntry(codexHome: string, payload: string): Promise<void>
  /** Deletes every item matching the attributes. */
  clear(attributes: Record<string, string>): Promise<void>
  /** Kills both processes (thawing first) and removes the folder; idempotent. */
  stop(): Promise<void>
}

export interface SecretServiceOptions {
  /** registers stop() with t.teardown */
  t?: { teardown(fn: () => unknown): void }
  /** bound for start-up (default 30 s: a loaded 2-core machine) */
  startTimeoutMs?: number
  /**
   * false: the bus alone, with nobody owning org.freedesktop.secrets (a session without a Secret
   * Service); items(), store() and friends then fail. Default true.
   */
  keyring?: boolean
}

/** Bound for one busctl / secret-tool call; only reached if the Secret Service hangs. */
const CALL_TIMEOUT_MS = 20_000

function busConfig(socket: string): string {
  // A session bus as Debian's session.conf, minus the service directories (no activation) and
  // minus its includes: nothing from the machine's D-Bus set-up leaks in.
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
}

interface Proc {
  child: ChildProcess
  output: () => string
  exited: Promise<void>
  done: boolean
}

function track(child: ChildProcess): Proc {
  let out = ''
  const p: Proc = {
    child,
    output: () => out,
    done: false,
    exited: new Promise<void>((resolve) => child.once('exit', () => resolve())),
  }
  void p.exited.then(() => (p.done = true))
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.on('error', (e) => (out += `\nspawn error: ${e.message}`))
  return p
}

/** Ends a process: SIGCONT (a stopped one ignores SIGTERM), SIGTERM, then SIGKILL after 5 s. */
async function end(p: Proc): Promise<void> {
  if (p.done || p.child.pid === undefined) return
  p.child.kill('SIGCONT')
  p.child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      p.child.kill('SIGKILL')
      resolve()
    }, 5_000)
  })
  await Promise.race([p.exited, killed])
  clearTimeout(timer)
  await p.exited
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

function runTool(cmd: string, args: string[], env: Record<string, string>, input?: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), CALL_TIMEOUT_MS + 5_000) // busctl's own timeout first
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`${cmd}: ${e.message} (run scripts/test-deps.sh)`))
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    if (input !== undefined) {
      child.stdin!.on('error', () => {})
      child.stdin!.end(input)
    }
  })
}

/** Whether a process is stopped by a signal (state T in /proc/<pid>/stat); false once it is gone. */
export function isStopped(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'T'
  } catch {
    return false
  }
}

/** `secret-tool` arguments for attributes: alternating names and values. */
function attributeArgs(attributes: Record<string, string>): string[] {
  return Object.entries(attributes).flat()
}

export async function startSecretService(opts: SecretServiceOptions = {}): Promise<SecretService> {
  const dir = tempDir('cad-ss-')
  const socket = path.join(dir, 'bus')
  const home = path.join(dir, 'home')
  const runtime = path.join(dir, 'run')
  fs.mkdirSync(home, { mode: 0o700 })
  fs.mkdirSync(runtime, { mode: 0o700 })
  const config = path.join(dir, 'bus.conf')
  fs.writeFileSync(config, busConfig(socket))
  const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' }
  const procs: Proc[] = []
  let stopped = false
  let frozen = false

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    frozen = false
    // The keyring first: it is a client of the bus.
    for (const p of [...procs].reverse()) await end(p)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  opts.t?.teardown(stop)
  const deadline = opts.startTimeoutMs ?? 30_000

  try {
    // 1. The bus; ready when it prints its address (an event, not a poll).
    const bus = track(spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address'], { env: baseEnv, stdio: ['ignore', 'pipe', 'pipe'] }))
    procs.push(bus)
    const printed = await new Promise<string>((resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => reject(new Error(`dbus-daemon printed no address within ${deadline} ms: ${bus.output()}`)), deadline)
      bus.child.stdout!.on('data', (d: string) => {
        buf += d
        const nl = buf.indexOf('\n')
        if (nl >= 0) {
          clearTimeout(timer)
          resolve(buf.slice(0, nl).trim())
        }
      })
      void bus.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`dbus-daemon exited before printing its address: ${bus.output()}`))
      })
    })
    if (!printed.startsWith(`unix:path=${socket}`)) throw new Error(`dbus-daemon listens on ${printed}, not ${socket}`)
    // Without the guid, so that the address is the socket path only (it is what Codex gets too).
    const busAddress = `unix:path=${socket}`
    const env = { DBUS_SESSION_BUS_ADDRESS: busAddress }
    const toolEnv = { ...baseEnv, ...env, HOME: home, XDG_RUNTIME_DIR: runtime }

    if (opts.keyring === false) return busOnly(busAddress, bus.child.pid!, stop)

    // 2. The keyring, unlocked with an empty password on stdin.
    const keyring = track(
      spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], { env: toolEnv, stdio: ['pipe', 'pipe', 'pipe'] }),
    )
    procs.push(keyring)
    keyring.child.stdin!.on('error', () => {})
    keyring.child.stdin!.end('\n')

    const busctl = (args: string[], timeoutMs = CALL_TIMEOUT_MS): Promise<Ran> =>
      runTool('busctl', [`--address=${busAddress}`, '--no-pager', '--json=short', `--timeout=${timeoutMs}ms`, ...args], toolEnv)
    const json = async (args: string[]): Promise<{ type: string; data: unknown }> => {
      const r = await busctl(args)
      if (r.code !== 0) throw new Error(`busctl ${args.slice(0, 4).join(' ')}: exit ${r.code}: ${r.stderr.trim()}`)
      return JSON.parse(r.stdout) as { type: string; data: unknown }
    }
    const SERVICE = ['org.freedesktop.secrets', '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service']

    // Ready once the default alias names a collection: the name is owned and `login` exists.
    await until(
      'gnome-keyring-daemon serving an unlocked default collection',
      async () => {
        if (keyring.done) throw new Error(`gnome-keyring-daemon exited during start-up: ${keyring.output()}`)
        const r = await busctl(['call', ...SERVICE, 'ReadAlias', 's', 'default'])
        if (r.code !== 0) return false
        const alias = (JSON.parse(r.stdout) as { data: string[] }).data[0]
        return alias !== undefined && alias !== '/'
      },
      deadline,
      20,
    )

    const secretTool = (args: string[], input?: string): Promise<Ran> => runTool('secret-tool', args, toolEnv, input)

    const items = async (filter: Record<string, string> = { service: CODEX_SERVICE }): Promise<SecretItem[]> => {
      const n = Object.keys(filter).length
      const found = (await json(['call', ...SERVICE, 'SearchItems', 'a{ss}', String(n), ...attributeArgs(filter)])).data as [string[], string[]]
      const out: SecretItem[] = []
      for (const [paths, unlocked] of [
        [found[0], true],
        [found[1], false],
      ] as const) {
        for (const p of paths) {
          const props = await busctl(['get-property', 'org.freedesktop.secrets', p, 'org.freedesktop.Secret.Item', 'Attributes', 'Label'])
          if (props.code !== 0) continue // deleted between the search and now
          const [attrs, label] = props.stdout
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { data: unknown }).data) as [Record<string, string>, string]
          let secret: string | null = null
          if (unlocked) {
            // secret-tool lookup returns the first item with these attributes: ours, unless two
            // items have identical attributes, which no writer here creates.
            const r = await secretTool(['lookup', ...attributeArgs(attrs)])
            secret = r.code === 0 ? r.stdout : null
          }
          out.push({ path: p, label, attributes: attrs, secret })
        }
      }
      return out
    }

    const ss: SecretService = {
      env,
      busAddress,
      keyringPid: keyring.child.pid!,
      busPid: bus.child.pid!,
      get frozen() {
        return frozen
      },
      async freeze() {
        keyring.child.kill('SIGSTOP')
        frozen = true
        await until('gnome-keyring-daemon stopped', () => isStopped(keyring.child.pid!))
      },
      async thaw() {
        keyring.child.kill('SIGCONT')
        frozen = false
        await until('gnome-keyring-daemon running again', () => !isStopped(keyring.child.pid!))
      },
      async answers(timeoutMs = CALL_TIMEOUT_MS) {
        return (await busctl(['call', ...SERVICE, 'ReadAlias', 's', 'default'], timeoutMs)).code === 0
      },
      items,
      async codexEntry(codexHome) {
        const want = codexEntryAttributes(codexHome)
        const all = await items(want)
        if (all.length > 1) throw new Error(`${all.length} Secret Service items for ${want.username}: Codex would read only one`)
        return all[0] ?? null
      },
      async store(attributes, secret, label = 'codex-authd test') {
        const r = await secretTool(['store', `--label=${label}`, ...attributeArgs(attributes)], secret)
        if (r.code !== 0) throw new Error(`secret-tool store: exit ${r.code}: ${r.stderr.trim()}`)
      },
      async storeCodexEntry(codexHome, payload) {
        registerAuthJsonSecrets(payload, 'Secret Service entry')
        const attrs = codexEntryAttributes(codexHome)
        await ss.store(attrs, payload, `${attrs.username}@${CODEX_SERVICE}:${CODEX_TARGET} (codex-authd test)`)
      },
      async clear(attributes) {
        const r = await secretTool(['clear', ...attributeArgs(attributes)])
        if (r.code !== 0) throw new Error(`secret-tool clear: exit ${r.code}: ${r.stderr.trim()}`)
      },
      stop,
    }
    return ss
  } catch (e) {
    await stop()
    throw e
  }
}

/** A SecretService whose bus has no Secret Service on it: only env, busAddress and stop() work. */
function busOnly(busAddress: string, busPid: number, stop: () => Promise<void>): SecretService {
  const none = (): never => {
    throw new Error('this bus has no Secret Service (started with keyring: false)')
  }
  return {
    env: { DBUS_SESSION_BUS_ADDRESS: busAddress },
    busAddress,
    keyringPid: null,
    busPid,
    frozen: false,
    freeze: none,
    thaw: none,
    answers: async () => false,
    items: none,
    codexEntry: none,
    store: none,
    storeCodexEntry: none,
    clear: none,
    stop,
  }
}

/** The in-process provider, the real Codex's world and a private Secret Service, as most keyring files need them. */
export interface KeyringCodexWorld {
  provider: TestProvider
  world: CodexWorld
  ss: SecretService
  /** How long the Secret Service took to be ready. */
  ssStartMs: number
}

/** Starts all three (stopped at the file's teardown, in reverse order). Call it from `t.before`. */
export async function startKeyringCodexWorld(t: { teardown(fn: () => Promise<void>): void }): Promise<KeyringCodexWorld> {
  const provider = await startProvider()
  const world = await startCodexWorld(provider)
  const t0 = Date.now()
  const ss = await startSecretService()
  const ssStartMs = Date.now() - t0
  t.teardown(async () => {
    await ss.stop()
    await world.close()
    await provider.stop()
  })
  return { provider, world, ss, ssStartMs }
}
