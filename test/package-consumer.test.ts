// The package a user installs: `npm pack` of this checkout, extracted into a consumer project's
// node_modules with none of codex-authd's dependencies beside it (the client bundle must stand
// alone), then a TypeScript consumer of `codex-authd/client` compiled under the module settings
// projects use, and run. Needs a build (`npm run build`); the test command builds first.

import t from 'tap'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'

const run = promisify(execFile)
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const runtimeDependencies = (JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'codex-authd-consumer-'))
t.teardown(() => fs.rm(work, { recursive: true, force: true }))

// --ignore-scripts: pack what is built, without rebuilding dist/ under other tests' feet.
const packed = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
  cwd: ROOT,
  env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
})
const [pack] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }]
const files = pack.files.map((f) => f.path)

const app = path.join(work, 'app')
const installed = path.join(app, 'node_modules', 'codex-authd')
await fs.mkdir(installed, { recursive: true })
await run('tar', ['-xzf', path.join(work, pack.filename), '-C', installed, '--strip-components=1'])
// The declarations name NodeJS.ProcessEnv: a Node project has @types/node (the README says so).
await fs.mkdir(path.join(app, 'node_modules', '@types'))
await fs.symlink(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(app, 'node_modules', '@types', 'node'))

t.test('the tarball holds the license, the client and its declarations', async (t) => {
  const pkg = JSON.parse(await fs.readFile(path.join(installed, 'package.json'), 'utf8')) as { license: string }
  t.equal(pkg.license, 'Apache-2.0')
  t.ok(files.includes('LICENSE'), 'LICENSE is packed')
  const license = await fs.readFile(path.join(installed, 'LICENSE'), 'utf8')
  t.match(license, /^\s*Apache License\s+Version 2\.0, January 2004/, 'LICENSE is the Apache License 2.0')
  t.match(license, /END OF TERMS AND CONDITIONS/, 'the full text, not a summary')
  for (const f of ['dist/client.cjs', 'dist/types/client/index.d.ts', 'dist/types/rpc/contract.d.ts', 'dist/types/package.json']) {
    t.ok(files.includes(f), `${f} is packed`)
  }
  t.notOk(files.some((f) => f.startsWith('src/') || f.startsWith('test/')), 'no sources or tests')
})

t.test('every path under dist/ that the README names is in the package', async (t) => {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8')
  const named = [...new Set(readme.match(/\bdist\/[\w./-]*\w/g) ?? [])]
  t.ok(named.includes('dist/types/rpc/contract.d.ts'), 'the README points at the shipped contract types')
  for (const p of named) t.ok(files.some((f) => f === p || f.startsWith(`${p}/`)), `${p} ships`)
  t.notMatch(readme, /\bsrc\/[\w/]+\.ts\b/, 'the README names no source file a user does not get')
})

t.test('the declarations import nothing but each other and Node built-ins', async (t) => {
  const dts = files.filter((f) => f.endsWith('.d.ts'))
  t.ok(dts.length >= 2)
  for (const f of dts) {
    const text = await fs.readFile(path.join(installed, f), 'utf8')
    const specifiers = [
      ...text.matchAll(/\bfrom\s+['"]([^'"]+)['"]/g),
      ...text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
      ...text.matchAll(/\/\/\/\s*<reference\s+(?:types|path)=['"]([^'"]+)['"]/g),
    ].map((m) => m[1]!)
    // Our own `dependencies` (koffi, for the os/ helpers' types) are installed with us.
    const foreign = specifiers.filter((s) => !s.startsWith('./') && !s.startsWith('../') && !s.startsWith('node:') && s !== 'node' && !(s in runtimeDependencies))
    t.same(foreign, [], `${f} needs no package that a user of the client does not install`)
  }
})

// Uses the client's values and types. The @ts-expect-error line fails the compile if the types
// ever resolve to `any` (the directive would then be unused).
const CONSUMER = `import { connect, DaemonUnreachableError, ErrorCode, type AuthdClient, type AuthGrant, type Status } from 'codex-authd/client'

export async function token(client: AuthdClient): Promise<string> {
  const grant: AuthGrant = await client.getAuth({ minValiditySeconds: 120 })
  const status: Status = await client.status()
  // @ts-expect-error loggedIn is a boolean
  const wrong: string = status.loggedIn
  return wrong + grant.token
}

async function main(): Promise<void> {
  try {
    await connect({ socket: process.argv[2]!, reconnect: false, timeoutMs: 5000 })
    console.log('connected?')
  } catch (e) {
    if (!(e instanceof DaemonUnreachableError)) throw e
    console.log(JSON.stringify({ unreachable: e.errno, notLoggedIn: ErrorCode.NotLoggedIn }))
  }
}
void main()
`

const SETTINGS: Array<{ name: string; type: 'commonjs' | 'module'; compilerOptions: Record<string, string> }> = [
  // module: commonjs implies moduleResolution node10, which ignores "exports" (typesVersions serves it).
  { name: 'commonjs (node10)', type: 'commonjs', compilerOptions: { module: 'commonjs' } },
  { name: 'node16, a CommonJS project', type: 'commonjs', compilerOptions: { module: 'node16' } },
  { name: 'node16, an ES module project', type: 'module', compilerOptions: { module: 'node16' } },
  { name: 'bundler', type: 'module', compilerOptions: { module: 'esnext', moduleResolution: 'bundler' } },
]

// tsc's own API (the compiler the tsc binary runs), so that the four projects parse @types/node and
// the default libraries once instead of four times: on 2 shared cores that is ~10 s instead of ~45.
// Every file is still checked as tsc would, with skipLibCheck off for the package's declarations.
const parsedOnce = new Map<string, ts.SourceFile | undefined>()

function compile(dir: string): { errors: string[]; checked: string[] } {
  const config = ts.getParsedCommandLineOfConfigFile(path.join(dir, 'tsconfig.json'), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'))
    },
  })!
  const host = ts.createCompilerHost(config.options)
  const read = host.getSourceFile.bind(host)
  host.getSourceFile = (file, lang, onError, fresh) => {
    if (file.startsWith(dir + path.sep)) return read(file, lang, onError, fresh)
    const key = `${file}\0${JSON.stringify(lang)}`
    if (!parsedOnce.has(key)) parsedOnce.set(key, read(file, lang, onError, fresh))
    return parsedOnce.get(key)
  }
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, host, configFileParsingDiagnostics: config.errors })
  // The consumer and every file of the installed package; @types/node and the libraries are
  // TypeScript's and Node's business.
  const ours = program.getSourceFiles().filter((sf) => sf.fileName.startsWith(dir + path.sep) || sf.fileName.startsWith(installed + path.sep))
  const main = program.getSourceFile(path.join(dir, 'main.ts'))
  const diagnostics = [
    ...ts.getPreEmitDiagnostics(program, main),
    ...ours.flatMap((sf) => program.getSemanticDiagnostics(sf)),
    // emit(main): emit() alone would type-check all of @types/node first.
    ...program.emit(main).diagnostics,
  ]
  const errors = ts.sortAndDeduplicateDiagnostics(diagnostics).map((d) => {
    const where = d.file ? `${path.relative(app, d.file.fileName)}(${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}): ` : ''
    return `${where}TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`
  })
  return { errors, checked: ours.map((sf) => path.relative(app, sf.fileName)) }
}

for (const [i, s] of SETTINGS.entries()) {
  t.test(`a consumer compiled with ${s.name} type-checks with no error and runs`, async (t) => {
    const dir = path.join(app, `c${i}`)
    await fs.mkdir(dir)
    await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${i}`, private: true, type: s.type }))
    const tsconfig = {
      compilerOptions: { ...s.compilerOptions, target: 'es2022', strict: true, skipLibCheck: false, outDir: 'out', rootDir: '.' },
      files: ['main.ts'],
    }
    await fs.writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig))
    await fs.writeFile(path.join(dir, 'main.ts'), CONSUMER)
    const { errors, checked } = compile(dir)
    t.same(errors, [], 'no error')
    t.ok(checked.includes('node_modules/codex-authd/dist/types/rpc/contract.d.ts'), 'the contract declarations were resolved and checked', { checked })
    // The emitted program loads the packed bundle with no dependency installed next to it.
    const missing = path.join(work, 'no-daemon', 's.sock')
    const r = await run(process.execPath, [path.join(dir, 'out', 'main.js'), missing], { cwd: dir })
    t.same(JSON.parse(r.stdout), { unreachable: 'ENOENT', notLoggedIn: -32001 })
  })
}
