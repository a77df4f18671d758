// Every call to the platform keyring, and the only importer of @napi-rs/keyring (docs/keyring.md#plan-for-the-store):
// macOS (login Keychain) and Windows (Credential Manager) differ from Linux only here.
//
// The binding blocks its thread (≈2 s on a silent Secret Service; Codex blocks forever), so calls
// run in one worker thread, one at a time, each with a deadline. A call past its deadline ends the
// worker (terminate; a new one is made for the next call) and fails with cause `timeout`, as do the
// calls queued behind it. The binding is resolved and loaded only when a keyring store is used: the
// file store never needs it, and a platform without a prebuilt binary is the named cause
// `binding_missing`, not a crash.
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { KeyringCause } from '../types.js'
import { clip } from '../text.js'
import { KEYRING_SERVICE, KEYRING_TARGET, keyringCause } from './keyring-entry.js'

export const DEFAULT_KEYRING_TIMEOUT_MS = 3000

/** A keyring call failed; `detail` is the binding's text (a D-Bus error, never a secret). */
export class KeyringError extends Error {
  constructor(
    readonly keyringCause: KeyringCause,
    readonly detail: string,
  ) {
    super(`keyring ${keyringCause}: ${detail}`)
    this.name = 'KeyringError'
  }
}

/** The calls a keyring store makes; one instance per daemon home. */
export interface KeyringBackend {
  /** The entry's value, or null when there is none. */
  get(account: string): Promise<string | null>
  set(account: string, value: string): Promise<void>
  /** true when an entry was deleted. */
  delete(account: string): Promise<boolean>
  close(): void
}

type Op = { op: 'get'; account: string } | { op: 'set'; account: string; value: string } | { op: 'delete'; account: string }
/** id -1: the binding could not be loaded in the worker. */
type Reply = { id: number; ok: true; value: string | boolean | null } | { id: number; ok: false; message: string }

// CommonJS, evaluated in the worker (no second bundle entry). The Entry is the one Codex's crate
// makes: target "default" (searched first, as Codex does) and the store pinned to the Secret Service
// (unpinned, the binding falls back to the kernel keyring, where Codex never looks).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
let binding = null
try { binding = require(workerData.bindingPath) } catch (e) {
  parentPort.postMessage({ id: -1, ok: false, init: true, message: String((e && e.message) || e) })
}
const entries = new Map()
function entry(account) {
  let e = entries.get(account)
  if (e === undefined) {
    e = binding.Entry.withTarget(workerData.target, workerData.service, account, { linux: { store: 'secret-service' } })
    entries.set(account, e)
  }
  return e
}
parentPort.on('message', (m) => {
  if (binding === null) return
  try {
    const e = entry(m.account)
    let value = null
    if (m.op === 'get') value = e.getPassword()
    else if (m.op === 'set') e.setPassword(m.value)
    else value = e.deleteCredential()
    parentPort.postMessage({ id: m.id, ok: true, value: value === undefined ? null : value })
  } catch (err) {
    entries.delete(m.account)
    parentPort.postMessage({ id: m.id, ok: false, message: String((err && err.message) || err) })
  }
})
`

interface Call {
  resolve: (v: string | boolean | null) => void
  reject: (e: KeyringError) => void
  timer: NodeJS.Timeout
}

/** The binding's path, resolved beside this file (the bundle's node_modules), or null. */
function bindingPath(): string | null {
  try {
    return createRequire(import.meta.url).resolve('@napi-rs/keyring')
  } catch {
    return null
  }
}

export class WorkerKeyring implements KeyringBackend {
  private worker: Worker | null = null
  private readonly calls = new Map<number, Call>()
  private nextId = 1
  private closed = false
  /** Worker threads ended because a call hung (for tests and diagnostics). */
  terminated = 0

  constructor(
    private readonly timeoutMs: number = DEFAULT_KEYRING_TIMEOUT_MS,
    /** The module the worker loads instead of @napi-rs/keyring (tests: a stand-in that hangs or fails to load). */
    private readonly binding: string | null = null,
  ) {}

  async get(account: string): Promise<string | null> {
    const v = await this.call({ op: 'get', account })
    return typeof v === 'string' ? v : null
  }

  async set(account: string, value: string): Promise<void> {
    await this.call({ op: 'set', account, value })
  }

  async delete(account: string): Promise<boolean> {
    try {
      return (await this.call({ op: 'delete', account })) === true
    } catch (e) {
      // The crate reports a missing entry as NoEntry: nothing was there to delete.
      if (e instanceof KeyringError && /no matching entry|noentry|no entry/i.test(e.detail)) return false
      throw e
    }
  }

  close(): void {
    this.closed = true
    this.stopWorker(new KeyringError('error', 'codex-authd is stopping'))
  }

  private call(op: Op): Promise<string | boolean | null> {
    if (this.closed) return Promise.reject(new KeyringError('error', 'codex-authd is stopping'))
    let worker: Worker
    try {
      worker = this.ensureWorker()
    } catch (e) {
      return Promise.reject(e)
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.terminated++
        this.stopWorker(new KeyringError('timeout', `no answer from the keyring within ${this.timeoutMs} ms`))
      }, this.timeoutMs)
      this.calls.set(id, { resolve, reject, timer })
      worker.postMessage({ id, ...op })
    })
  }

  private ensureWorker(): Worker {
    if (this.worker !== null) return this.worker
    const path = this.binding ?? bindingPath()
    if (path === null) throw new KeyringError('binding_missing', 'the package @napi-rs/keyring is not installed')
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bindingPath: path, service: KEYRING_SERVICE, target: KEYRING_TARGET } })
    // An idle worker must not keep the daemon alive (nor wake it: it waits on its port only).
    worker.unref()
    worker.on('message', (r: Reply) => this.onReply(worker, r))
    worker.on('error', (e) => {
      if (this.worker === worker) this.stopWorker(new KeyringError('error', clip(errMessage(e), 300)))
    })
    worker.on('exit', () => {
      if (this.worker === worker) this.stopWorker(new KeyringError('error', 'the keyring worker ended'))
    })
    this.worker = worker
    return worker
  }

  private onReply(worker: Worker, r: Reply): void {
    if (this.worker !== worker) return
    if (r.id === -1 && !r.ok) {
      // The package is there but its native part for this platform is not (or does not load).
      this.stopWorker(new KeyringError('binding_missing', clip(r.message, 300)))
      return
    }
    const call = this.calls.get(r.id)
    if (call === undefined) return
    this.calls.delete(r.id)
    clearTimeout(call.timer)
    if (r.ok) call.resolve(r.value)
    else call.reject(new KeyringError(keyringCause(r.message), clip(r.message, 300)))
  }

  /** Fails every call in flight with `error` and ends the worker; the next call makes a new one. */
  private stopWorker(error: KeyringError): void {
    const worker = this.worker
    this.worker = null
    for (const call of this.calls.values()) {
      clearTimeout(call.timer)
      call.reject(error)
    }
    this.calls.clear()
    // terminate() cannot interrupt a native call: the thread ends once the binding returns.
    if (worker !== null) void worker.terminate().catch(() => {})
  }
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
