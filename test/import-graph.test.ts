// The layering of src/ stays as built: scripts/check-imports.mjs over the real tree finds nothing,
// and over a small tree with one upward import and one cycle finds exactly those.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT, tempDir } from './support/daemon.js'

const SCRIPT = path.join(ROOT, 'scripts', 'check-imports.mjs')

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' })
  return { status: r.status, out: r.stdout + r.stderr }
}

t.test('src/: no cycles, no upward imports', async (t) => {
  const r = run([])
  t.equal(r.status, 0, r.out)
  t.match(r.out, / 0 problems/)
})

t.test('the check finds an upward import, a value import of the contract, and a cycle', async (t) => {
  const root = tempDir('cad-imports-')
  const files: Record<string, string> = {
    'rpc/contract.ts': 'export type Mode = "a"\n',
    'rpc/errors.ts': "import type { Mode } from './contract.js'\nexport class RpcError extends Error {}\n",
    // the domain throwing wire errors: the upward import this check exists for
    'refresh/refresher.ts': "import { RpcError } from '../rpc/errors.js'\nimport type { Mode } from '../rpc/contract.js'\nexport const r = RpcError\n",
    // a value import of the contract from the domain: only types may come from there
    'login/manager.ts': "import { Mode } from '../rpc/contract.js'\nimport { b } from './b.js'\nexport const a = 1\n",
    'login/b.ts': "import { a } from './manager.js'\nexport const b = a\n",
    'daemon/main.ts': "import { r } from '../refresh/refresher.js'\nimport '../rpc/errors.js'\n",
  }
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(root, path.dirname(f)), { recursive: true })
    fs.writeFileSync(path.join(root, f), text)
  }
  const r = run(['--root', root])
  t.equal(r.status, 1)
  const lines = r.out.trim().split('\n')
  t.same(
    lines.filter((l) => l.startsWith('layer:') || l.startsWith('cycle:')).sort(),
    [
      'cycle: login/b.ts -> login/manager.ts -> login/b.ts',
      'layer: login/manager.ts imports rpc/contract.ts: the domain does not depend on the wire, the daemon or the client',
      'layer: refresh/refresher.ts imports rpc/errors.ts: the domain does not depend on the wire, the daemon or the client',
    ],
    'exactly the three findings (the type-only contract import of the refresher is allowed)',
  )
  t.match(lines.at(-1), /6 files, 8 imports, 3 problems/)
})
