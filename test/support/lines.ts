// Splits a stream into lines: the one NDJSON line reader every helper of the suite uses.

/**
 * Calls `onLine` with each complete line (without its '\n') as it arrives; the stream is switched
 * to utf8. With `flushAtEnd`, a last line without a newline is delivered when the stream ends.
 */
export function onLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void, opts: { flushAtEnd?: boolean } = {}): void {
  let buf = ''
  stream.setEncoding('utf8')
  stream.on('data', (d: string) => {
    buf += d
    let i: number
    while ((i = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      onLine(line)
    }
  })
  if (opts.flushAtEnd) {
    stream.on('end', () => {
      if (buf) onLine(buf)
    })
  }
}
