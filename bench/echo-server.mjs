// The floor: a bare NDJSON JSON-RPC server on a Unix socket. Each line is parsed and answered with
// a fixed result of the same shape and size as the daemon's getAuth answer (ECHO_RESULT).
// Usage: node bench/echo-server.mjs SOCKET   (prints "ready" once listening)
import fs from 'node:fs'
import net from 'node:net'

const socketPath = process.argv[2]
const result = JSON.parse(process.env.ECHO_RESULT ?? 'null')
fs.rmSync(socketPath, { force: true })
const server = net.createServer((sock) => {
  sock.setNoDelay?.(true)
  let parts = []
  sock.on('data', (chunk) => {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(10, start)
      if (nl === -1) break
      parts.push(chunk.subarray(start, nl))
      const line = parts.length === 1 ? parts[0] : Buffer.concat(parts)
      parts = []
      start = nl + 1
      const msg = JSON.parse(line.toString('utf8'))
      sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }) + '\n')
    }
    if (start < chunk.length) parts.push(Buffer.from(chunk.subarray(start)))
  })
  sock.on('error', () => {})
})
server.listen({ path: socketPath, backlog: 2048 }, () => process.stdout.write('ready\n'))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
