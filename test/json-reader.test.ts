// The position-keeping JSON reader (src/codex/json-reader.ts) on its own: node positions, serde's
// line/column count, and syntax errors as Codex's serde_json words and places them.
import t from 'tap'
import { describeNode, JsonSyntaxError, lineColumn, parseJson, toPlain, type JsonNode } from '../src/codex/json-reader.js'

/** The error parseJson throws for `text`, placed as serde_json prints it. */
function syntaxError(text: string): string {
  try {
    parseJson(text)
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e
    const { line, column } = lineColumn(text, e.offset)
    return `${e.message} at line ${line} column ${column}`
  }
  return '(parsed)'
}

t.test('syntax errors: the message and position Codex 0.171 printed for the same text', async (t) => {
  // Recorded with `codex login status` on an auth.json holding each text ("failed to deserialize
  // CLI auth from file: <this>"). Where the reader and serde_json disagree (EOF inside an object,
  // a trailing comma's wording, malformed numbers and literals, positions at a multi-byte character,
  // what serde skips inside unknown fields) the case is not listed here.
  const cases: [string, string][] = [
    ['', 'EOF while parsing a value at line 1 column 0'],
    ['   ', 'EOF while parsing a value at line 1 column 3'],
    ['{"a":', 'EOF while parsing a value at line 1 column 5'],
    ['{"a":1,', 'EOF while parsing a value at line 1 column 7'],
    ['{"a":"abc', 'EOF while parsing a string at line 1 column 9'],
    ['{"a" 1}', 'expected `:` at line 1 column 6'],
    ['{"a":1 "b":2}', 'expected `,` or `}` at line 1 column 8'],
    ['{\n  "a": 1\n  "b": 2\n}', 'expected `,` or `}` at line 3 column 3'],
    ['{"a":truex}', 'expected `,` or `}` at line 1 column 10'],
    ['{1:2}', 'key must be a string at line 1 column 2'],
    ['{"a":[1,2,]}', 'expected value at line 1 column 11'],
    ['{"a":.5}', 'expected value at line 1 column 6'],
    ['{"a":+1}', 'expected value at line 1 column 6'],
    ['{\r\n"a":x}', 'expected value at line 2 column 5'],
    ['{"a":"\\x"}', 'invalid escape at line 1 column 8'],
    ['{} {}', 'trailing characters at line 1 column 4'],
    ['{}x', 'trailing characters at line 1 column 3'],
    ['{"a":1}\n\n}', 'trailing characters at line 3 column 1'],
    ['{"a":' + '['.repeat(127) + ']'.repeat(127) + '}x', 'trailing characters at line 1 column 261'],
    // columns count UTF-8 bytes
    ['{"a":"é" x}', 'expected `,` or `}` at line 1 column 11'],
    ['{"a":"\u2028" x}', 'expected `,` or `}` at line 1 column 12'],
    ['{"a":"😀" x}', 'expected `,` or `}` at line 1 column 13'],
    ['{"😀":x}', 'expected value at line 1 column 9'],
  ]
  // Names in ASCII: a raw U+2028 in a test name would split TAP's line.
  const name = (text: string): string => JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)
  for (const [text, want] of cases) t.equal(syntaxError(text), want, name(text))
})

t.test('syntax errors the reader raises for every value', async (t) => {
  // serde_json raises these for the fields Codex reads as typed values; inside fields it skips
  // (unknown ones) it lets them pass, so for auth.json the reader is the stricter of the two.
  t.equal(syntaxError('{"a":1e400}'), 'number out of range at line 1 column 6')
  t.equal(syntaxError('{"a":"x\\ud800"}'), 'lone leading surrogate in hex escape at line 1 column 14')
  t.equal(syntaxError('{"a":"\\udc00"}'), 'unexpected end of hex escape at line 1 column 13')
  t.equal(syntaxError('['.repeat(130) + ']'.repeat(130)), 'recursion limit exceeded at line 1 column 130')
  t.equal(syntaxError('['.repeat(129) + ']'.repeat(129)), '(parsed)', 'the top and 128 levels below it are allowed')
  t.equal(syntaxError('{"a":"abc\\'), 'EOF while parsing a value at line 1 column 10')
})

t.test('node positions: first and last character of each value, the end of each key', async (t) => {
  const text = '{ "s": "x\\"y", "n": -1.5e2, "b": [true, false, null], "o": {} }'
  const root = parseJson(text)
  if (root.kind !== 'object') return t.fail('not an object')
  t.equal(root.start, 0)
  t.equal(root.end, text.length - 1)
  const at = (n: JsonNode): string => text.slice(n.start, n.end + 1)
  t.same(
    root.entries.map((e) => [e.key, text[e.keyEnd], at(e.value)]),
    [
      ['s', '"', '"x\\"y"'],
      ['n', '"', '-1.5e2'],
      ['b', '"', '[true, false, null]'],
      ['o', '"', '{}'],
    ],
  )
  t.same(
    root.entries.map((e) => text.slice(0, e.keyEnd + 1).endsWith(`"${e.key}"`)),
    [true, true, true, true],
    'keyEnd is the closing quote of the key',
  )
  const b = root.entries[2]!.value
  if (b.kind !== 'array') return t.fail('not an array')
  t.same(b.items.map(at), ['true', 'false', 'null'])
  t.same(b.items.map(describeNode), ['a boolean', 'a boolean', 'null'])
  t.same(root.entries.map((e) => describeNode(e.value)), ['a string', 'a number', 'an array', 'an object'])
})

t.test('values: escapes, surrogate pairs, numbers, repeated keys kept in order', async (t) => {
  const root = parseJson('{"k":"a\\n\\u00e9\\ud83d\\ude00\\/","k":2,"n":[0,-0.5,1E3]}')
  if (root.kind !== 'object') return t.fail('not an object')
  t.same(
    root.entries.map((e) => e.key),
    ['k', 'k', 'n'],
    'a repeated key is two entries (the schema decides)',
  )
  t.same(toPlain(root), { k: 2, n: [0, -0.5, 1000] }, 'toPlain: the last of a repeated key wins, as JSON.parse')
  t.same(toPlain(root.entries[0]!.value), 'a\né😀/')
})

t.test('toPlain never touches a prototype', async (t) => {
  const plain = toPlain(parseJson('{"__proto__":{"polluted":true},"constructor":1}')) as Record<string, unknown>
  t.ok(Object.hasOwn(plain, '__proto__'), '__proto__ is an own key')
  t.same(Object.keys(plain), ['__proto__', 'constructor'])
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.equal(Object.getPrototypeOf(plain), Object.prototype)
})

t.test('lineColumn', async (t) => {
  const cases: [string, number, number, number, string][] = [
    ['abc', 0, 1, 1, 'first character'],
    ['abc', 2, 1, 3, 'last character'],
    ['abc', 99, 1, 3, 'past the end: the last character'],
    ['', 0, 1, 0, 'empty text: column 0, as serde at EOF'],
    ['ab\ncd', 4, 2, 2, 'second line'],
    ['ab\ncd', 2, 1, 2, 'a newline ends its line: the column before it'],
    ['\n\nx', 1, 2, 1, 'an empty line'],
    ['é\nxé"', 4, 2, 4, 'UTF-8 bytes, not UTF-16 units'],
    ['a\r\nb', 3, 2, 1, 'CR is an ordinary character, LF ends the line'],
  ]
  for (const [text, offset, line, column, name] of cases) t.same(lineColumn(text, offset), { line, column }, name)
})
