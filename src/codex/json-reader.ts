// A JSON reader that keeps positions, so that a problem can say "line 5 column 27" as Codex
// (serde_json) does, and so that repeated keys can be seen (serde rejects a repeated known field,
// JSON.parse keeps the last one silently). Generic: the auth.json schema is in authfile.ts.
// Syntax errors use serde_json's wording, and for most the position serde gives; the cases checked
// against Codex, and where the two differ, are in test/json-reader.test.ts.

export type JsonNode =
  | { kind: 'object'; entries: JsonEntry[]; start: number; end: number }
  | { kind: 'array'; items: JsonNode[]; start: number; end: number }
  | { kind: 'string'; value: string; start: number; end: number }
  | { kind: 'number'; value: number; start: number; end: number }
  | { kind: 'boolean'; value: boolean; start: number; end: number }
  | { kind: 'null'; start: number; end: number }

/** One member of an object, in file order (repeats included). */
export interface JsonEntry {
  key: string
  /** Offset of the key's closing quote: where serde reports a problem with the key. */
  keyEnd: number
  value: JsonNode
}

/** Text that is not JSON; `offset` is where serde_json stops (a UTF-16 index into the text). */
export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message)
    this.name = 'JsonSyntaxError'
  }
}

/** serde_json's recursion limit. */
const MAX_DEPTH = 128

/**
 * The one JSON value `text` holds, surrounded by JSON whitespace only. Offsets (`start`, `end`:
 * first and last character of a value) index into `text`. Throws JsonSyntaxError.
 */
export function parseJson(text: string): JsonNode {
  return new JsonParser(text).parseDocument()
}

class JsonParser {
  private i = 0
  constructor(private readonly s: string) {}

  parseDocument(): JsonNode {
    this.ws()
    const node = this.value(0)
    this.ws()
    if (this.i < this.s.length) throw new JsonSyntaxError('trailing characters', this.i)
    return node
  }

  private ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i)
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++
      else break
    }
  }

  private fail(msg: string): never {
    throw new JsonSyntaxError(this.i >= this.s.length && !msg.startsWith('EOF') ? 'EOF while parsing a value' : msg, this.i)
  }

  private value(depth: number): JsonNode {
    if (depth > MAX_DEPTH) this.fail('recursion limit exceeded')
    const c = this.s[this.i]
    const start = this.i
    switch (c) {
      case '{':
        return this.object(depth)
      case '[':
        return this.array(depth)
      case '"': {
        const value = this.string()
        return { kind: 'string', value, start, end: this.i - 1 }
      }
      case 't':
      case 'f':
      case 'n':
        return this.literal()
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number()
        return this.fail('expected value')
    }
  }

  private literal(): JsonNode {
    const start = this.i
    for (const [word, node] of [
      ['true', { kind: 'boolean', value: true }],
      ['false', { kind: 'boolean', value: false }],
      ['null', { kind: 'null' }],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length
        return { ...node, start, end: this.i - 1 } as JsonNode
      }
    }
    return this.fail('expected value')
  }

  private number(): JsonNode {
    const start = this.i
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y
    m.lastIndex = this.i
    const r = m.exec(this.s)
    if (!r || r[0] === '-') return this.fail('invalid number')
    this.i += r[0].length
    const value = Number(r[0])
    if (!Number.isFinite(value)) throw new JsonSyntaxError('number out of range', start)
    return { kind: 'number', value, start, end: this.i - 1 }
  }

  private string(): string {
    this.i++ // opening quote
    let out = ''
    for (;;) {
      if (this.i >= this.s.length) this.fail('EOF while parsing a string')
      const ch = this.s[this.i] as string
      const code = ch.charCodeAt(0)
      if (ch === '"') {
        this.i++
        return out
      }
      if (code < 0x20) this.fail('control character (\\u0000-\\u001F) found while parsing a string')
      if (ch !== '\\') {
        out += ch
        this.i++
        continue
      }
      this.i++
      const e = this.s[this.i]
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }
      if (e !== undefined && Object.hasOwn(simple, e)) {
        out += simple[e]
        this.i++
        continue
      }
      if (e !== 'u') this.fail('invalid escape')
      const hi = this.hex4()
      if (hi >= 0xd800 && hi <= 0xdbff) {
        if (this.s[this.i] !== '\\' || this.s[this.i + 1] !== 'u') this.fail('lone leading surrogate in hex escape')
        this.i++
        const lo = this.hex4()
        if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone leading surrogate in hex escape')
        out += String.fromCharCode(hi, lo)
      } else if (hi >= 0xdc00 && hi <= 0xdfff) {
        this.fail('unexpected end of hex escape')
      } else {
        out += String.fromCharCode(hi)
      }
    }
  }

  /** At the `u` of `\uXXXX`: consumes it and the four hex digits. */
  private hex4(): number {
    this.i++
    const h = this.s.slice(this.i, this.i + 4)
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('invalid escape')
    this.i += 4
    return parseInt(h, 16)
  }

  private object(depth: number): JsonNode {
    const start = this.i
    this.i++
    const entries: JsonEntry[] = []
    this.ws()
    if (this.s[this.i] === '}') {
      this.i++
      return { kind: 'object', entries, start, end: this.i - 1 }
    }
    for (;;) {
      this.ws()
      if (this.s[this.i] !== '"') this.fail(entries.length ? 'trailing comma or key must be a string' : 'key must be a string')
      const key = this.string()
      const keyEnd = this.i - 1
      this.ws()
      if (this.s[this.i] !== ':') this.fail('expected `:`')
      this.i++
      this.ws()
      const value = this.value(depth + 1)
      entries.push({ key, keyEnd, value })
      this.ws()
      const c = this.s[this.i]
      if (c === ',') {
        this.i++
        continue
      }
      if (c === '}') {
        this.i++
        return { kind: 'object', entries, start, end: this.i - 1 }
      }
      this.fail('expected `,` or `}`')
    }
  }

  private array(depth: number): JsonNode {
    const start = this.i
    this.i++
    const items: JsonNode[] = []
    this.ws()
    if (this.s[this.i] === ']') {
      this.i++
      return { kind: 'array', items, start, end: this.i - 1 }
    }
    for (;;) {
      this.ws()
      items.push(this.value(depth + 1))
      this.ws()
      const c = this.s[this.i]
      if (c === ',') {
        this.i++
        continue
      }
      if (c === ']') {
        this.i++
        return { kind: 'array', items, start, end: this.i - 1 }
      }
      this.fail('expected `,` or `]`')
    }
  }
}

/** Sets an own property, also for `__proto__`, so parsed keys can never touch a prototype. */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

/** The plain value a node stands for, as JSON.parse gives it (a repeated key: the last wins). */
export function toPlain(node: JsonNode): unknown {
  switch (node.kind) {
    case 'object': {
      const o: Record<string, unknown> = {}
      for (const e of node.entries) setOwn(o, e.key, toPlain(e.value))
      return o
    }
    case 'array':
      return node.items.map(toPlain)
    case 'null':
      return null
    default:
      return node.value
  }
}

/** The node's JSON type for a message ("found an array"); never its value, which may be secret. */
export function describeNode(node: JsonNode): string {
  switch (node.kind) {
    case 'object':
      return 'an object'
    case 'array':
      return 'an array'
    case 'string':
      return 'a string'
    case 'number':
      return 'a number'
    case 'boolean':
      return 'a boolean'
    case 'null':
      return 'null'
  }
}

/**
 * 1-based line and column of `offset` the way serde_json counts them: lines split on `\n`, the
 * column counts UTF-8 bytes up to and including the character at `offset`.
 */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const at = Math.max(0, Math.min(offset, text.length - 1))
  let line = 1
  let lineStart = 0
  for (let i = 0; i < at; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++
      lineStart = i + 1
    }
  }
  if (text.charCodeAt(at) === 0x0a && at > lineStart) return { line, column: Buffer.byteLength(text.slice(lineStart, at)) }
  return { line, column: Buffer.byteLength(text.slice(lineStart, at + 1)) }
}
