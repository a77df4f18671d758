// Build: esbuild bundles the bins and the client library as CommonJS (fast start,
// docs/architecture.md#library-choices),
// then tsc emits the client's type declarations. Run: node scripts/build.mjs
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// esbuild and typescript are devDependencies: a checkout installed with --omit=dev cannot build.
// The packed package (npm pack) ships dist/ built and needs neither.
let build
try {
  ;({ build } = await import('esbuild'))
} catch {
  console.error('build: esbuild is not installed. Building dist/ needs the devDependencies: run `npm ci` (without --omit=dev).')
  process.exit(1)
}
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const shebang = { js: '#!/usr/bin/env node' }

const common = {
  absWorkingDir: root,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: false,
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { CODEX_AUTHD_VERSION: JSON.stringify(pkg.version) },
}

// koffi is native (it loads the prebuilt .node for this platform): the one package dist/ requires
// from node_modules at run time, so it stays a `dependency`. src/os/libc.ts resolves it with
// createRequire(import.meta.url), which a CommonJS bundle gets from the injected file. The client
// needs it too (the peer check of src/os/peercred.ts, and the exec listener's probe of the home's
// owner lock through src/os/flock.ts), loaded only when used.
const withKoffi = {
  external: ['koffi', '@napi-rs/keyring'],
  define: { ...common.define, 'import.meta.url': 'importMetaUrl' },
  inject: ['scripts/import-meta-url.mjs'],
}
// Modules only one path needs (the daemon's pretty log on a terminal, the device login's QR code)
// are files of their own beside the bins, required when that path runs: the bins neither hold nor
// compile them, so `codex-auth token` and a daemon logging JSON start and stay as lean as before.
// In the sources they are `await import('./log-pretty.js')` and `await import('./qr.js')`.
const LAZY_CHUNKS = [
  { entryPoints: ['src/log-pretty.ts'], outfile: 'dist/log-pretty.cjs' },
  { entryPoints: ['src/client/qr.ts'], outfile: 'dist/qr.cjs' },
]
const lazyChunks = {
  name: 'lazy-chunks',
  setup(b) {
    b.onResolve({ filter: /^\.\/(log-pretty|qr)\.js$/ }, (args) => ({ path: args.path.replace(/\.js$/, '.cjs'), external: true }))
  },
}
const jobs = [
  ...LAZY_CHUNKS,
  { entryPoints: ['src/client/cli.ts'], outfile: 'dist/codex-auth.cjs', banner: shebang, bin: true, ...withKoffi },
  { entryPoints: ['src/client/index.ts'], outfile: 'dist/client.cjs', ...withKoffi },
]
if (existsSync(join(root, 'src/daemon/main.ts'))) {
  jobs.push({
    entryPoints: ['src/daemon/main.ts'],
    outfile: 'dist/codex-authd.cjs',
    banner: shebang,
    ...withKoffi,
    bin: true,
  })
}

await Promise.all(
  jobs.map(async ({ bin, ...opts }) => {
    await build({ ...common, plugins: [lazyChunks], ...opts })
    if (bin) chmodSync(join(root, opts.outfile), 0o755)
  }),
)

// Type declarations for `codex-authd/client` (dist/types/client/index.d.ts, with the RPC contract
// in dist/types/rpc/contract.d.ts). The package is "type": "module", so TypeScript would read these
// .d.ts files as ES modules while dist/client.cjs is CommonJS; a CommonJS consumer under
// `moduleResolution: node16` would then be told it cannot require() the client (TS1479). The
// package.json below makes them CommonJS declarations, matching the bundle.
const require = createRequire(import.meta.url)
const tsc = require.resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.client.json')], { cwd: root, stdio: 'inherit' })
writeFileSync(join(root, 'dist/types/package.json'), JSON.stringify({ type: 'commonjs' }) + '\n')
