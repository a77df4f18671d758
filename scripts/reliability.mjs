// Runs the reliability and security suite (issue 7) and prints its figures: every
// `# reliability: {...}` line the tests emit, then tap's totals. Usage: npm run reliability
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const files = [
  'test/reliability-fuzz.test.ts',
  'test/reliability-flood.test.ts',
  'test/reliability-hostile-files.test.ts',
  'test/reliability-socket-security.test.ts',
  'test/reliability-crash.test.ts',
  'test/reliability-concurrent-codex.test.ts',
  'test/refresh-kill9-lanes-a.test.ts',
  'test/refresh-kill9-lanes-b.test.ts',
  'test/secrets.test.ts',
]
const tap = join(root, 'node_modules', '.bin', 'tap')
const child = spawn(tap, ['--reporter=tap', ...files], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
let buf = ''
const figures = []
child.stdout.setEncoding('utf8').on('data', (d) => {
  buf += d
  let i
  while ((i = buf.indexOf('\n')) !== -1) {
    const line = buf.slice(0, i)
    buf = buf.slice(i + 1)
    if (/# reliability:/.test(line) || /^# \{ total/.test(line) || /^\s*not ok /.test(line)) figures.push(line.trim())
  }
})
child.on('close', (code) => {
  process.stdout.write(figures.join('\n') + '\n')
  process.exit(code ?? 1)
})
