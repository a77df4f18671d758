// Runs every benchmark under bench/ in turn (each compares against a baseline measured in the
// same run) and prints their JSON result lines together at the end. Usage: npm run bench
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const benches = ['rpc-latency', 'cli-token', 'change-pickup', 'idle', 'refresh-storm', 'broker-refresh', 'sink-token']
const results = []
let failed = false
for (const name of benches) {
  const file = join(root, 'bench', `${name}.mjs`)
  if (!existsSync(file)) continue
  process.stdout.write(`\n## ${name}\n`)
  const r = spawnSync(process.execPath, [file, ...process.argv.slice(2)], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  process.stdout.write(r.stdout)
  if (r.status !== 0) failed = true
  for (const line of r.stdout.split('\n')) if (line.startsWith('{"bench"')) results.push(line)
}
process.stdout.write(`\n## results\n${results.join('\n')}\n`)
process.exit(failed ? 1 : 0)
