// Checks the import graph of src/ (docs/architecture.md): no cycles, and the layers stand in
// order — the wire (rpc/) below the domain's callers, the domain free of the wire, the client
// free of the daemon. Reads the import statements of every .ts file; no dependencies.
// Usage: node scripts/check-imports.mjs [--root DIR]   (DIR defaults to src/; exit 1 on a finding)
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** Top-level folders (or files) of src/, by what they may import from src/. */
const DOMAIN = ['broker', 'codex', 'login', 'net', 'refresh', 'state', 'store']
/**
 * Domain modules the client may use, and why (docs/architecture.md#layers): the sinks of
 * `codex-auth sink` and `exec --remote` (client/sink.ts, client/remote-home.ts) write auth.json
 * exactly as the daemon does, through Codex's format and its locked, atomic write; `codex-auth
 * doctor`'s I/O edge reads auth.json with the daemon's own reader and renders the units as
 * `service install` would. No second parser, serializer, lock order or copy of the templates.
 * The CLI loads all of them with import(), only for those commands.
 */
const CLIENT_SHARED = {
  '*': ['codex/authfile.ts', 'store/authstore.ts', 'store/atomic-write.ts'],
  'client/doctor-gather.ts': ['service/install.ts'],
}
const RULES = [
  {
    name: 'the domain does not depend on the wire, the daemon or the client',
    from: (m) => DOMAIN.includes(top(m)),
    // Only the contract's vocabulary, and only as types.
    allows: (dep, typeOnly) => !['rpc', 'daemon', 'client', 'service'].includes(top(dep)) || (dep === 'rpc/contract.ts' && typeOnly),
  },
  {
    name: 'rpc/ is plumbing and vocabulary: it imports nothing above it',
    from: (m) => top(m) === 'rpc',
    allows: (dep) => ![...DOMAIN, 'daemon', 'client', 'service'].includes(top(dep)),
  },
  {
    name: 'the client (library and CLI) carries no daemon code',
    from: (m) => top(m) === 'client',
    allows: (dep, _typeOnly, file) =>
      CLIENT_SHARED['*'].includes(dep) ||
      (CLIENT_SHARED[file]?.includes(dep) ?? false) ||
      (![...DOMAIN, 'daemon', 'service'].includes(top(dep)) && (top(dep) !== 'rpc' || dep === 'rpc/contract.ts')),
  },
  {
    name: 'only the daemon imports the daemon',
    from: (m) => top(m) !== 'daemon',
    allows: (dep) => top(dep) !== 'daemon',
  },
]

/** `login/manager.ts` -> `login`; `paths.ts` -> `paths.ts`. */
function top(m) {
  const i = m.indexOf('/')
  return i === -1 ? m : m.slice(0, i)
}

// import/export … from '…' (the names hold no other statement), import('…'), import '…'.
const IMPORT =
  /(?:^|[;\n])\s*(import|export)\s+(type\s+)?((?:(?!\b(?:import|export)\b)[\w\s{},*$])*?)\s*from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm

/** The relative imports of one file: [{ spec, typeOnly }]. Comments are skipped. */
export function importsOf(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
  const out = []
  for (const m of code.matchAll(IMPORT)) {
    const spec = m[4] ?? m[5] ?? m[6]
    if (!spec.startsWith('.')) continue
    let typeOnly = m[2] !== undefined
    // `import { type A, type B } from` is erased as well.
    const names = m[3] ?? ''
    if (!typeOnly && /^\{[^}]*\}$/.test(names.trim())) {
      const parts = names.trim().slice(1, -1).split(',').map((s) => s.trim()).filter(Boolean)
      typeOnly = parts.length > 0 && parts.every((p) => p.startsWith('type '))
    }
    out.push({ spec, typeOnly })
  }
  return out
}

/** Every .ts file under root (relative paths with /), and its resolved relative imports. */
export function readGraph(root) {
  const graph = new Map()
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name)
      if (e.isDirectory()) walk(full)
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const rel = path.relative(root, full).split(path.sep).join('/')
        const deps = importsOf(fs.readFileSync(full, 'utf8')).map(({ spec, typeOnly }) => {
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\.js$/, '.ts')
          return { target, typeOnly }
        })
        graph.set(rel, deps)
      }
    }
  }
  walk(root)
  return graph
}

/** Layer violations and cycles, as lines of text (empty: all good). */
export function check(graph) {
  const problems = []
  for (const [file, deps] of graph) {
    for (const rule of RULES) {
      if (!rule.from(file)) continue
      for (const d of deps) {
        if (!rule.allows(d.target, d.typeOnly, file)) problems.push(`layer: ${file} imports ${d.target}${d.typeOnly ? ' (types)' : ''}: ${rule.name}`)
      }
    }
    for (const d of deps) if (!graph.has(d.target)) problems.push(`missing: ${file} imports ${d.target}, which does not exist`)
  }
  // Cycles, type-only imports included: a cycle of types still ties two rooms together.
  const state = new Map()
  const stack = []
  const seen = new Set()
  const visit = (f) => {
    state.set(f, 'open')
    stack.push(f)
    for (const { target } of graph.get(f) ?? []) {
      if (!graph.has(target)) continue
      if (state.get(target) === 'open') {
        const cycle = [...stack.slice(stack.indexOf(target)), target].join(' -> ')
        if (!seen.has(cycle)) problems.push(`cycle: ${cycle}`)
        seen.add(cycle)
      } else if (!state.has(target)) visit(target)
    }
    stack.pop()
    state.set(f, 'done')
  }
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f)
  return problems
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { root: { type: 'string' } } })
  const root = values.root ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src')
  const graph = readGraph(root)
  const problems = check(graph)
  for (const p of problems) console.log(p)
  console.log(`${graph.size} files, ${[...graph.values()].reduce((n, d) => n + d.length, 0)} imports, ${problems.length} problems`)
  process.exit(problems.length === 0 ? 0 : 1)
}
