// Protocol fuzzing (issue 7): at least 10,000 generated frames per run against the real daemon
// bundle, from a seeded PRNG (FUZZ_SEED overrides the fixed default; the seed is printed so a
// failure reproduces). Every frame's expected answer comes from a model of the contract
// (docs/contract.md#framing-and-limits, #methods; JSON-RPC 2.0), applied to the frame as the client built it:
//   unparsable (bad UTF-8 or JSON)             -> -32700, id null
//   not a request object / bad id / params     -> -32600 (id null when the id is unusable)
//   unknown method                             -> -32601
//   wrong param type for a method that exists  -> -32602 with data.field
//   login/awaitLogin/cancelLogin/logout        -> -32601 or -32602 (implemented concurrently)
//   a notification                             -> no answer at all
//   a line over 1 MiB                          -> -32600 naming the limit, then the connection closes
// -32603 or a missing answer is always a failure. Afterwards the daemon must still serve a normal
// client. The API key is fake and is never printed.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startDaemon, stopAtTeardown } from './support/daemon.js'
import { startProvider } from './support/provider.js'
import { Wire, freePorts, memoryOf, mulberry32, reliabilityComment } from './support/reliability.js'

const DEFAULT_SEED = 0x7e1ab1e
const seedEnv = process.env.FUZZ_SEED
const SEED = seedEnv !== undefined && seedEnv !== '' ? Number(seedEnv) >>> 0 : DEFAULT_SEED
const RANDOM_FRAMES = Number(process.env.FUZZ_FRAMES ?? 10_000)
const WORKERS = 32
const MAX_LINE = 1024 * 1024
const MAX_BATCH = 256
const ANSWER_TIMEOUT_MS = 10_000

const API_KEY = `sk-fake-fuzz-${randomBytes(12).toString('hex')}`

const CORE = ['getAuth', 'status', 'refresh', 'subscribe'] as const
const LOGIN_FAMILY = ['login', 'awaitLogin', 'cancelLogin', 'logout'] as const
const ALL_METHODS = [...CORE, ...LOGIN_FAMILY] as const

// ------------------------------------------------------------------------------------- the model

/** A JSON text fragment inserted verbatim (numbers JSON.stringify cannot write, e.g. 1e400). */
class Raw {
  constructor(readonly text: string) {}
}

function ser(v: unknown): string {
  if (v instanceof Raw) return v.text
  if (Array.isArray(v)) return `[${v.map(ser).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${JSON.stringify(k)}:${ser(x)}`)
      .join(',')}}`
  }
  return JSON.stringify(v)
}

type Id = string | number | null

/** What one request object in a frame must produce. */
interface ExpectItem {
  codes: number[]
  /** the id the answer carries; `idOrNull` also allows null (-32600 on an object with a usable id) */
  id: Id
  idOrNull?: boolean
  /** -32602 on a core method: the data.field named */
  field?: string
  /** a success: the method whose result shape is checked */
  result?: (typeof CORE)[number]
}

type Expect =
  | { kind: 'none' }
  | { kind: 'one'; item: ExpectItem }
  | { kind: 'batch'; items: ExpectItem[] }
  | { kind: 'fatal'; code: number; message: RegExp }

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

function classifyRequest(m: unknown): ExpectItem | null {
  if (!isObj(m)) return { codes: [-32600], id: null }
  const id = m.id
  const idOk = id === undefined || id === null || typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))
  if (!idOk) return { codes: [-32600], id: null }
  const replyId = (id ?? null) as Id
  const invalid: ExpectItem = { codes: [-32600], id: replyId, idOrNull: true }
  if (m.jsonrpc !== '2.0') return invalid
  if (typeof m.method !== 'string') return invalid
  if ('params' in m && (m.params === null || typeof m.params !== 'object')) return invalid
  if ('result' in m || 'error' in m) return invalid
  // A well-formed request: a notification gets no answer, whatever happens to it.
  if (id === undefined) return null
  const method = m.method
  const params = m.params
  // Only wrong params reach a login-family method here (a real call would start a login): -32602.
  if ((LOGIN_FAMILY as readonly string[]).includes(method)) return { codes: [-32602], id: replyId }
  if (!(CORE as readonly string[]).includes(method)) return { codes: [-32601], id: replyId }
  if (Array.isArray(params)) return { codes: [-32602], id: replyId, field: 'params' }
  if (method === 'getAuth' && isObj(params) && 'minValiditySeconds' in params) {
    const v = params.minValiditySeconds
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 3600) return { codes: [-32602], id: replyId, field: 'minValiditySeconds' }
  }
  return { codes: [], id: replyId, result: method as (typeof CORE)[number] }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/** The contract applied to one line (without its newline). */
function expectFor(line: Buffer): Expect {
  if (line.length > MAX_LINE) return { kind: 'fatal', code: -32600, message: new RegExp(`line longer than ${MAX_LINE} bytes`) }
  if (line.length === 0 || (line.length === 1 && line[0] === 13)) return { kind: 'none' }
  let v: unknown
  try {
    v = JSON.parse(strictUtf8.decode(line))
  } catch {
    return { kind: 'one', item: { codes: [-32700], id: null } }
  }
  if (Array.isArray(v)) {
    if (v.length === 0 || v.length > MAX_BATCH) return { kind: 'one', item: { codes: [-32600], id: null } }
    const items = v.map(classifyRequest).filter((x): x is ExpectItem => x !== null)
    return items.length === 0 ? { kind: 'none' } : { kind: 'batch', items }
  }
  const item = classifyRequest(v)
  return item === null ? { kind: 'none' } : { kind: 'one', item }
}

// -------------------------------------------------------------------------------- the generator

interface Frame {
  category: string
  /** the line, without its newline */
  line: Buffer
  /** send as two writes, split at this byte offset of line + newline */
  splitAt?: number
}

function generator(seed: number) {
  const rnd = mulberry32(seed)
  const int = (n: number): number => Math.floor(rnd() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const chance = (p: number): boolean => rnd() < p
  let counter = 0

  const unicode = ['é', '€', '😀', '\u0000', '\u2028', '\ud800', '"', '\\', '\t', '\r', 'Ω', '中文']
  const randomString = (max = 12): string => {
    let s = ''
    const n = int(max + 1)
    for (let i = 0; i < n; i++) s += chance(0.2) ? pick(unicode) : String.fromCharCode(32 + int(95))
    return s
  }
  const freshId = (): Id => {
    counter++
    switch (int(6)) {
      case 0:
        return `id-${counter}-${randomString(4)}`
      case 1:
        return -counter
      case 2:
        return counter + 0.5
      case 3:
        return counter * 1e12
      default:
        return counter
    }
  }
  const hugeNumbers = [new Raw('1e400'), new Raw('-1e400'), new Raw('9'.repeat(400)), new Raw('1e-400'), new Raw('-0'), new Raw('123456789012345678901234567890'), new Raw('0.' + '1'.repeat(300))]
  const scalar = (): unknown => pick([null, true, false, 0, -1, 1.5, 3600, 3601, 1e308, -5, '', 'x', '60', randomString(), pick(hugeNumbers)])
  const junkValue = (depth = 0): unknown => {
    const r = int(depth > 3 ? 1 : 4)
    if (r === 0) return scalar()
    if (r === 1) return Array.from({ length: int(4) }, () => junkValue(depth + 1))
    if (r === 2) return Object.fromEntries(Array.from({ length: int(4) }, () => [randomString(6), junkValue(depth + 1)]))
    return pick([[], {}, [[]], { a: {} }])
  }
  /** A value of the wrong type (never a string) for a string field. */
  const notString = (): unknown => pick([null, true, false, 0, 1, -1, 1.5, [], ['x'], {}, { a: 'b' }, pick(hugeNumbers)])
  /** A value of the wrong type for a boolean field. */
  const notBoolean = (): unknown => pick([null, 0, 1, 'true', 'false', '', [], [true], {}, { revoke: true }, pick(hugeNumbers)])
  /** A value of the wrong type, or out of range, for getAuth.minValiditySeconds. */
  const badValidity = (): unknown =>
    pick([null, true, false, '60', '', 'x', [], [60], {}, { s: 60 }, -1, -0.001, 3600.5, 3601, 1e9, new Raw('1e400'), new Raw('-1e400'), new Raw('9'.repeat(400))])
  const goodValidity = (): unknown => pick([0, 1, 30, 60, 59.5, 3600, new Raw('-0'), new Raw('1e-400'), new Raw('0.000001'), new Raw('3.6e3')])

  const req = (method: string, params?: unknown, notification = false): Record<string, unknown> => {
    const m: Record<string, unknown> = notification ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', id: freshId(), method }
    if (params !== undefined) m.params = params
    return m
  }

  /** A valid call of a core method (never a login-family one: those must not really run). */
  const validCore = (notification = false): Record<string, unknown> => {
    const method = pick(CORE)
    let params: unknown
    switch (int(4)) {
      case 0:
        params = undefined
        break
      case 1:
        params = {}
        break
      case 2:
        params = method === 'getAuth' ? { minValiditySeconds: goodValidity() } : { [randomString(5) || 'k']: junkValue() }
        break
      default:
        params = method === 'getAuth' ? { minValiditySeconds: goodValidity(), extra: junkValue() } : { extra: junkValue() }
    }
    return req(method, params, notification)
  }

  /** Wrong params for every method: params of a non-object type, or a field of the wrong type. */
  const wrongParams = (): Record<string, unknown> => {
    const method = pick(ALL_METHODS)
    const shape = int(10)
    if (shape === 0) return req(method, pick([[], [1], ['x'], [{}], [null], [{ minValiditySeconds: 60 }]]))
    if (shape === 1) return req(method, pick([0, 1, -1, 1.5, '', 'status', 'x', true, false, null, new Raw('1e400')]))
    switch (method) {
      case 'getAuth':
        return req(method, { minValiditySeconds: badValidity() })
      case 'login': {
        if (chance(0.5)) {
          const p: Record<string, unknown> = { method: chance(0.3) ? pick(['password', 'BROWSER', 'api', '', 'apikey ']) : notString() }
          if (chance(0.5)) p.apiKey = chance(0.5) ? `sk-fake-${int(1e6)}` : notString()
          return req(method, p)
        }
        return req(method, { method: 'apikey', apiKey: notString() })
      }
      case 'awaitLogin':
        if (chance(0.5)) return req(method, chance(0.2) ? {} : { loginId: notString(), ...(chance(0.5) ? { timeoutSeconds: 1 } : {}) })
        return req(method, { loginId: chance(0.5) ? notString() : `login-${int(1e6)}`, timeoutSeconds: pick(['1', '', true, null, [], {}, [1], new Raw('1e400'), -1]) })
      case 'cancelLogin':
        return req(method, chance(0.2) ? {} : { loginId: notString() })
      case 'logout':
        return req(method, { revoke: notBoolean() })
      default:
        // status, refresh and subscribe take no params: only their type can be wrong.
        return req(method, pick([[], [true], [{}]]))
    }
  }

  const unknownMethod = (notification = false): Record<string, unknown> =>
    req(
      pick([
        randomString(20),
        '',
        '__proto__',
        'constructor',
        'toString',
        'hasOwnProperty',
        'rpc.discover',
        'GETAUTH',
        'getauth',
        'getAuth ',
        ' status',
        'status\u0000',
        'login\n',
        'refresh_token',
        'getAuth.token',
        '../status',
      ]),
      chance(0.5) ? junkValue() : undefined,
      notification,
    )

  /** A request object broken in one way. */
  const invalidRequest = (): unknown => {
    const base: Record<string, unknown> = chance(0.5) ? validCore() : unknownMethod()
    switch (int(9)) {
      case 0:
        delete base.jsonrpc
        return base
      case 1:
        return { ...base, jsonrpc: pick(['1.0', '2', 2, 2.0, null, '', '2.0 ', true, ['2.0']]) }
      case 2:
        return { ...base, method: pick([null, 0, 1, true, [], ['status'], {}, { name: 'status' }]) }
      case 3: {
        delete base.method
        return base
      }
      case 4:
        return { ...base, id: pick([{}, [], [1], true, false, { id: 1 }, new Raw('1e400'), new Raw('-1e400')]) }
      case 5:
        return { ...base, params: pick([null, 0, 'x', '', true, false, new Raw('1e400')]) }
      case 6:
        return { ...base, result: junkValue() }
      case 7:
        return { ...base, error: { code: -32000, message: 'x' } }
      default:
        return pick([null, 0, 1, -1, 'status', '', true, false, new Raw('1e400')])
    }
  }

  /** One element: the mix used for single frames and batch members. */
  const element = (): unknown => {
    const r = rnd()
    if (r < 0.18) return validCore()
    if (r < 0.26) return validCore(true)
    if (r < 0.55) return wrongParams()
    if (r < 0.65) return unknownMethod(chance(0.2))
    if (r < 0.9) return invalidRequest()
    return junkValue()
  }

  const text = (s: string): Buffer => Buffer.from(s, 'utf8')
  const invalidUtf8 = [
    [0x80],
    [0xbf],
    [0xc0, 0xaf],
    [0xc3],
    [0xe2, 0x82],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
    [0xfe],
    [0xff],
  ]

  const frame = (): Frame => {
    const r = rnd()
    if (r < 0.45) return { category: 'request', line: text(ser(element())) }
    if (r < 0.6) {
      // A batch of junk (sometimes only notifications, which must get no answer at all).
      const n = 1 + int(12)
      const items = chance(0.1) ? Array.from({ length: n }, () => validCore(true)) : Array.from({ length: n }, element)
      return { category: 'batch', line: text(ser(items)) }
    }
    if (r < 0.7) {
      // Invalid UTF-8 spliced into an otherwise good request.
      const good = text(ser(element()))
      const at = int(good.length + 1)
      const bad = Buffer.from(pick(invalidUtf8))
      return { category: 'invalid-utf8', line: Buffer.concat([good.subarray(0, at), bad, good.subarray(at)]) }
    }
    if (r < 0.8) {
      // Invalid JSON: a truncated request, or one with a character dropped or inserted (the model
      // decides: a mutation may stay valid).
      const s = ser(chance(0.5) ? validCore() : unknownMethod())
      const k = int(3)
      let out: string
      if (k === 0) out = s.slice(0, 1 + int(s.length - 1))
      else if (k === 1) {
        const at = int(s.length)
        out = s.slice(0, at) + s.slice(at + 1)
      } else {
        const at = int(s.length + 1)
        out = s.slice(0, at) + pick(['{', '}', '[', ']', ',', ':', '"', '\\', 'x', '0', "'", 'NaN', 'undefined', '/*', '\u0001']) + s.slice(at)
      }
      return { category: 'invalid-json', line: text(out) }
    }
    if (r < 0.86) {
      // Random bytes (no newline).
      const b = randomFrom(1 + int(200))
      return { category: 'random-bytes', line: b }
    }
    if (r < 0.92) {
      // Garbage text of JSON-ish tokens.
      const toks = ['{', '}', '[', ']', ',', ':', '"jsonrpc"', '"2.0"', '"method"', '"status"', '"id"', '1', 'null', 'true', ' ', '\t', '\r', '"', '\\u', '1e400', '-']
      return { category: 'garbage', line: text(Array.from({ length: 1 + int(30) }, () => pick(toks)).join('')) }
    }
    if (r < 0.96) {
      // Whitespace and line-ending variants of a good request.
      const s = ser(element())
      return { category: 'whitespace', line: text(pick([' ', '\t', '\r', '']) + s + pick([' ', '\r', '\t\r', ''])) }
    }
    if (r < 0.999) {
      // Huge numbers and long strings, well within the line limit.
      const big = pick([
        () => ser(req('getAuth', { minValiditySeconds: new Raw(pick(['1' + '0'.repeat(20_000), '0.' + '0'.repeat(20_000) + '1', '-' + '9'.repeat(5000), '1e' + '9'.repeat(300)])) })),
        () => ser({ jsonrpc: '2.0', id: new Raw('1' + '0'.repeat(2000)), method: 'status' }),
        () => ser(req('status', { pad: 'x'.repeat(10_000 + int(200_000)) })),
        () => ser(req(pick(['no.such.method', 'x'.repeat(100_000)]), { pad: '€'.repeat(int(50_000)) })),
        () => ser({ jsonrpc: '2.0', id: `long-${counter++}-${'i'.repeat(50_000)}`, method: 'getAuth' }),
        () => ser(req('login', { method: 'apikey', apiKey: new Raw('9'.repeat(50_000)) })),
      ])()
      return { category: 'huge-values', line: text(big) }
    }
    // Rare: a batch over the size limit.
    return { category: 'batch-too-large', line: text(ser(Array.from({ length: MAX_BATCH + 1 + int(10) }, () => validCore()))) }
  }

  function randomFrom(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) {
      let x = int(256)
      if (x === 10) x = 11
      b[i] = x
    }
    return b
  }

  return { frame, req, ser }
}

/** Frames that do not come from the PRNG: the edges, each once per run. */
function fixedFrames(): Frame[] {
  const out: Frame[] = []
  const text = (s: string): Buffer => Buffer.from(s, 'utf8')
  // One good request (with multi-byte UTF-8 so that some splits fall inside a character), split
  // into two writes at every byte offset.
  const split = text(ser({ jsonrpc: '2.0', id: 'split-é€😀', method: 'getAuth', params: { minValiditySeconds: 30, note: 'é€😀中' } }))
  for (let at = 1; at <= split.length; at++) out.push({ category: 'split', line: split, splitAt: at })
  const deep = 100_000
  out.push({ category: 'deep-nesting', line: text('['.repeat(deep)) })
  out.push({ category: 'deep-nesting', line: text('{"a":'.repeat(deep)) })
  out.push({ category: 'deep-nesting', line: text('['.repeat(deep) + ']'.repeat(deep)) })
  out.push({ category: 'deep-nesting', line: text('{"a":'.repeat(deep) + '1' + '}'.repeat(deep)) })
  out.push({ category: 'deep-nesting', line: text('['.repeat(500_000) + ']'.repeat(500_000)) })
  out.push({ category: 'deep-nesting', line: text(`{"jsonrpc":"2.0","id":"deep-params","method":"status","params":{"x":${'['.repeat(deep)}${']'.repeat(deep)}}}`) })
  out.push({ category: 'deep-nesting', line: text(`{"jsonrpc":"2.0","id":"deep-validity","method":"getAuth","params":{"minValiditySeconds":${'['.repeat(deep)}${']'.repeat(deep)}}}`) })
  out.push({ category: 'deep-nesting', line: text(`{"jsonrpc":"2.0","id":${'['.repeat(deep)}${']'.repeat(deep)},"method":"status"}`) })
  out.push({ category: 'deep-nesting', line: text(`[${'{"jsonrpc":"2.0","method":"status","params":' .repeat(1000)}{}${'}'.repeat(1000)}]`) })
  // At the limit and just over it.
  const req = `{"jsonrpc":"2.0","id":"at-limit","method":"status"}`
  out.push({ category: 'line-limit', line: text(req + ' '.repeat(MAX_LINE - req.length)) })
  out.push({ category: 'line-limit', line: text(req + ' '.repeat(MAX_LINE - req.length + 1)) })
  out.push({ category: 'line-limit', line: text(`{"jsonrpc":"2.0","id":"str-at-limit","method":"nope","params":{"s":"${'x'.repeat(MAX_LINE - 100)}"}}`) })
  out.push({ category: 'line-limit', line: text(`{"jsonrpc":"2.0","id":"over","method":"status","params":{"s":"${'x'.repeat(MAX_LINE)}"}}`) })
  out.push({ category: 'line-limit', line: Buffer.alloc(2 * MAX_LINE, 0x78) })
  out.push({ category: 'line-limit', line: Buffer.alloc(MAX_LINE + 1, 0xff) })
  // Odd but legal lines.
  out.push({ category: 'edge', line: text('') })
  out.push({ category: 'edge', line: text('\r') })
  out.push({ category: 'edge', line: text('[]') })
  out.push({ category: 'edge', line: text('[[]]') })
  out.push({ category: 'edge', line: text('{}') })
  out.push({ category: 'edge', line: text('"\ud800"') })
  out.push({ category: 'edge', line: text('\ufeff{"jsonrpc":"2.0","id":"bom","method":"status"}') })
  out.push({ category: 'edge', line: text('{"jsonrpc":"2.0","id":1,"id":"dup","method":"nope","method":"status"}') })
  out.push({ category: 'edge', line: text('{"jsonrpc":"2.0","id":"proto","method":"status","__proto__":{"params":1}}') })
  out.push({ category: 'edge', line: text('{"jsonrpc":"2.0","id":"ctor","method":"getAuth","params":{"__proto__":{"minValiditySeconds":"x"},"constructor":1}}') })
  return out
}

// ---------------------------------------------------------------------------------- the checks

interface Failure {
  index: number
  category: string
  reason: string
}

function checkResult(method: (typeof CORE)[number], r: any): string | null {
  const grantOk = (g: any): boolean => isObj(g) && g.mode === 'apikey' && g.token === API_KEY && g.accountId === null
  switch (method) {
    case 'getAuth':
    case 'refresh':
      return grantOk(r) ? null : `${method}: not the API-key grant`
    case 'status':
      if (!isObj(r) || r.loggedIn !== true || r.mode !== 'apikey' || r.source !== 'env') return 'status: unexpected shape'
      return JSON.stringify(r).includes(API_KEY) ? 'status holds the secret' : null
    case 'subscribe':
      return isObj(r) && r.subscribed === true && Object.keys(r).length === 1 ? null : 'subscribe: unexpected result'
  }
}

function sameId(a: unknown, b: Id): boolean {
  return a === b || (typeof a === 'number' && typeof b === 'number' && Object.is(a + 0, b + 0))
}

function checkItem(exp: ExpectItem, msg: any): string | null {
  if (!isObj(msg) || msg.jsonrpc !== '2.0') return 'answer is not a JSON-RPC response'
  if (!('id' in msg)) return 'answer has no id'
  if (!(sameId(msg.id, exp.id) || (exp.idOrNull === true && msg.id === null))) return `answer id ${JSON.stringify(msg.id)?.slice(0, 40)}, expected ${JSON.stringify(exp.id)?.slice(0, 40)}`
  if (exp.result !== undefined) {
    if ('error' in msg) return `expected a result of ${exp.result}, got error ${(msg.error as any)?.code}`
    return checkResult(exp.result, msg.result)
  }
  if (!isObj(msg.error)) return `expected error ${exp.codes.join('|')}, got a result`
  const code = msg.error.code
  if (code === -32603) return 'internal error (-32603)'
  if (!exp.codes.includes(code as number)) return `expected error ${exp.codes.join('|')}, got ${code}`
  if (typeof msg.error.message !== 'string' || msg.error.message === '') return 'error without a message'
  if (exp.field !== undefined && (msg.error.data as any)?.field !== exp.field) return `-32602 names field ${(msg.error.data as any)?.field}, expected ${exp.field}`
  return null
}

function checkBatch(items: ExpectItem[], answer: any): string | null {
  if (!Array.isArray(answer)) return 'batch answered with a non-array'
  if (answer.length !== items.length) return `batch: ${answer.length} answers for ${items.length} requests`
  const left = [...answer]
  // Match answers that carry a usable id first, then the null-id ones (order is not promised).
  const sorted = [...items].sort((a, b) => Number(a.id === null || a.idOrNull === true) - Number(b.id === null || b.idOrNull === true))
  for (const exp of sorted) {
    const i = left.findIndex((m) => checkItem(exp, m) === null)
    if (i === -1) {
      const sameIdAnswer = left.find((m) => isObj(m) && sameId(m.id, exp.id))
      return `batch: no matching answer (${sameIdAnswer ? checkItem(exp, sameIdAnswer) : 'none with that id'})`
    }
    left.splice(i, 1)
  }
  return null
}

// ----------------------------------------------------------------------------------- the run

t.test(`protocol fuzz, seed ${SEED}`, async (t) => {
  t.comment(`fuzz seed ${SEED} (reproduce with FUZZ_SEED=${SEED})`)
  const provider = await startProvider()
  t.teardown(() => provider.stop())
  const ports = await freePorts(2)
  const d = stopAtTeardown(
    t,
    await startDaemon({
      args: ['--issuer', provider.issuer, '--issuer-kind', 'openai', '--login-ports', ports.join(',')],
      env: { OPENAI_API_KEY: API_KEY },
    }),
  )

  const gen = generator(SEED)
  const frames: Frame[] = [...fixedFrames()]
  for (let i = 0; i < RANDOM_FRAMES; i++) frames.push(gen.frame())

  const failures: Failure[] = []
  const byCategory: Record<string, number> = {}
  const byCode: Record<string, number> = {}
  let answered = 0
  let silent = 0
  let reconnects = 0
  const t0 = Date.now()

  const fail = (index: number, category: string, reason: string): void => {
    failures.push({ index, category, reason })
  }
  const count = (msg: any): void => {
    const tally = (m: any): void => {
      const k = isObj(m) && isObj(m.error) ? String(m.error.code) : 'result'
      byCode[k] = (byCode[k] ?? 0) + 1
    }
    if (Array.isArray(msg)) msg.forEach(tally)
    else tally(msg)
  }

  let sentinel = 0
  const worker = async (w: number): Promise<void> => {
    let wire: Wire | null = null
    for (let i = w; i < frames.length; i += WORKERS) {
      const f = frames[i]!
      byCategory[f.category] = (byCategory[f.category] ?? 0) + 1
      if (wire === null || wire.isClosed) {
        if (wire !== null) reconnects++
        wire = await Wire.connect(d.socket)
      }
      const exp = expectFor(f.line)
      const bytes = Buffer.concat([f.line, Buffer.from('\n')])
      if (f.splitAt !== undefined) {
        await wire.write(bytes.subarray(0, f.splitAt))
        // Let the first half reach the daemon's read before the second is written.
        await new Promise((r) => setImmediate(r))
        await wire.write(bytes.subarray(f.splitAt))
      } else await wire.write(bytes)

      if (exp.kind === 'none') {
        // Nothing may come back: the next answer must be the sentinel's.
        const id = `sentinel-${w}-${sentinel++}`
        await wire.write(`{"jsonrpc":"2.0","id":"${id}","method":"status"}\n`)
        const e = await wire.next(ANSWER_TIMEOUT_MS)
        if (e.type !== 'msg') fail(i, f.category, `sentinel after a silent frame: ${e.type}`)
        else if (e.msg?.id !== id) fail(i, f.category, `a frame that needs no answer got one (code ${e.msg?.error?.code ?? 'result'})`)
        else silent++
        continue
      }
      const e = await wire.next(ANSWER_TIMEOUT_MS)
      if (e.type !== 'msg') {
        fail(i, f.category, `no answer (${e.type})`)
        wire.close()
        wire = null
        continue
      }
      answered++
      count(e.msg)
      let problem: string | null
      if (exp.kind === 'fatal') {
        problem = isObj(e.msg) && isObj(e.msg.error) && e.msg.error.code === exp.code && e.msg.id === null && exp.message.test(String(e.msg.error.message)) ? null : `over-limit line: got ${e.raw.slice(0, 120)}`
        if (problem === null) {
          const closed = await Promise.race([wire.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), ANSWER_TIMEOUT_MS))])
          if (!closed) problem = 'connection not closed after an over-limit line'
        }
        wire.close()
        wire = null
        reconnects++
      } else if (exp.kind === 'batch') problem = checkBatch(exp.items, e.msg)
      else problem = checkItem(exp.item, e.msg)
      if (problem !== null) fail(i, f.category, problem)
    }
    wire?.close()
  }
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)))
  const fuzzMs = Date.now() - t0

  // Still up, still serving a normal client correctly.
  t.equal(d.proc.exitCode, null, 'daemon still running')
  const c = await Wire.connect(d.socket)
  t.teardown(() => c.close())
  const st = await c.call('status')
  t.equal(st.result?.loggedIn, true, 'status works afterwards')
  t.equal(st.result?.daemon?.pid, d.pid, 'same daemon')
  const g = await c.call('getAuth', { minValiditySeconds: 60 })
  t.ok(g.result?.mode === 'apikey' && g.result?.token === API_KEY, 'getAuth returns the API key afterwards')
  const internal = d.logs.filter((l) => l.includes('"method failed"'))
  t.equal(internal.length, 0, 'no method failed with an internal error')
  t.equal(d.stderr.join('').length, 0, 'nothing on stderr')
  const mem = memoryOf(d.pid)

  if (failures.length > 0) {
    const shown = failures.slice(0, 25).map((f) => `#${f.index} [${f.category}] ${f.reason}`)
    t.comment(`first failures (seed ${SEED}):\n${shown.join('\n')}`)
  }
  t.equal(failures.length, 0, `every frame answered as the contract says (${frames.length} frames)`)
  t.ok(frames.length >= 10_000, 'at least 10,000 frames')
  reliabilityComment(t, {
    file: 'reliability-fuzz',
    seed: SEED,
    cases: frames.length,
    failures: failures.length,
    timeMs: fuzzMs,
    answered,
    silentOk: silent,
    reconnects,
    codes: byCode,
    categories: byCategory,
    daemonRssMB: mem.rssMB,
    daemonPeakRssMB: mem.peakMB,
  })
})
