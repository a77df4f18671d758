// Helpers for the login tests: an RPC connection that keeps notifications (rawConnect's call()
// drops them), free loopback ports, and small HTTP helpers that act as the user's browser.
import http from 'node:http'
import net from 'node:net'
import fs from 'node:fs'
import path from 'node:path'
import { freePorts, startDaemon, stopAtTeardown, type RunningDaemon } from './daemon.js'
import { onLines } from './lines.js'
import { startProvider, type ProviderOptions, type TestProvider } from './provider.js'
import { registerSecret } from './secrets.js'

export interface RpcAnswer {
  id: number
  result?: any
  error?: { code: number; message: string; data?: any }
}

export interface Notification {
  method: string
  params: any
}

export interface Rpc {
  call(method: string, params?: unknown): Promise<RpcAnswer>
  /** calls and returns the result; throws with the error's code and message otherwise */
  ok(method: string, params?: unknown): Promise<any>
  notifications: Notification[]
  /** the first notification (seen so far or later) that matches */
  waitFor(pred: (n: Notification) => boolean): Promise<Notification>
  close(): void
}

/** Free loopback ports: the one helper lives in daemon.ts. */
export { freePorts }

let nextId = 1

export function connectRpc(socketPath: string): Promise<Rpc> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath)
    const pending = new Map<number, (a: RpcAnswer) => void>()
    const notifications: Notification[] = []
    const waiters: Array<{ pred: (n: Notification) => boolean; resolve: (n: Notification) => void }> = []
    onLines(sock, (line) => {
      const msg = JSON.parse(line)
      // a served credential is a secret for the leak scanner (secrets.ts)
      if (typeof msg?.result?.token === 'string') registerSecret(msg.result.token, `${msg.result.mode ?? 'served'} token (RPC result)`)
      if (typeof msg.id === 'number' && pending.has(msg.id)) {
        pending.get(msg.id)!(msg)
        pending.delete(msg.id)
      } else if (typeof msg.method === 'string') {
        const n = { method: msg.method, params: msg.params }
        notifications.push(n)
        for (let w = waiters.length - 1; w >= 0; w--) {
          if (waiters[w]!.pred(n)) waiters.splice(w, 1)[0]!.resolve(n)
        }
      }
    })
    sock.on('error', () => {})
    const rpc: Rpc = {
      call(method, params) {
        const id = nextId++
        return new Promise((res) => {
          pending.set(id, res)
          sock.write(JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }) + '\n')
        })
      },
      async ok(method, params) {
        const a = await rpc.call(method, params)
        if (a.error) throw Object.assign(new Error(`${method}: ${a.error.code} ${a.error.message}`), { rpc: a.error })
        return a.result
      },
      notifications,
      waitFor(pred) {
        const seen = notifications.find(pred)
        if (seen) return Promise.resolve(seen)
        return new Promise((res) => waiters.push({ pred, resolve: res }))
      },
      close: () => sock.destroy(),
    }
    sock.once('connect', () => resolve(rpc))
    sock.once('error', reject)
  })
}

export interface Page {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** One GET without following redirects (the browser's view of one step). */
export function get(url: string | URL): Promise<Page> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { 'user-agent': 'login-test-browser' } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
  })
}

/** GET the callback and follow our redirect to /success, as a browser would. */
export async function followCallback(callback: URL): Promise<{ first: Page; final: Page }> {
  const first = await get(callback)
  if (first.status >= 300 && first.status < 400 && first.headers.location) {
    return { first, final: await get(new URL(first.headers.location, callback)) }
  }
  return { first, final: first }
}

/** GET that reports a refused connection as status -1 (the login server is gone). */
export async function getOrRefused(url: string | URL): Promise<Page> {
  try {
    return await get(url)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ECONNREFUSED') return { status: -1, headers: {}, body: '' }
    throw e
  }
}

/** The query of a URL as [key, value] pairs in order. */
export function queryPairs(url: string): [string, string][] {
  return [...new URL(url).searchParams.entries()]
}

export interface Setup {
  provider: TestProvider
  daemon: RunningDaemon
  rpc: Rpc
  ports: number[]
}

/** A provider, a kind-openai daemon on free login ports, and a subscribed connection. */
export async function setup(
  t: { teardown(fn: () => unknown): void },
  o: { args?: string[]; env?: Record<string, string>; provider?: ProviderOptions; kind?: 'openai' | 'oidc'; ports?: number[] } = {},
): Promise<Setup> {
  const provider = await startProvider(o.provider)
  t.teardown(() => provider.stop())
  const ports = o.ports ?? (await freePorts(2))
  const daemon = stopAtTeardown(
    t,
    await startDaemon({
      args: ['--issuer', provider.issuer, '--issuer-kind', o.kind ?? 'openai', '--login-ports', ports.join(','), ...(o.args ?? [])],
      env: o.env,
    }),
  )
  const rpc = await connectRpc(daemon.socket)
  t.teardown(() => rpc.close())
  await rpc.ok('subscribe')
  return { provider, daemon, rpc, ports }
}

export function authFile(home: string): string {
  return path.join(home, 'auth.json')
}

export function readJson(file: string): any {
  return JSON.parse(fs.readFileSync(file, 'utf8'))
}
