// The package a user installs. `npm pack`, then `npm install -g` of the tarball by an
// unprivileged user whose PATH holds node, npm and sh and no compiler (no cc, make, python3),
// offline from an npm cache primed with koffi and @napi-rs/keyring: nothing is compiled (every .node file is one koffi
// ships prebuilt), only what dist/ loads is installed, and the installed bins run as that user.
import t from 'tap'
import { execFile, execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { DAEMON_BIN, ROOT } from './support/daemon.js'
import { onLines } from './support/lines.js'
import { asUser, ensureTestUser, publicTempDir, type TestUser } from './support/reliability.js'

t.comment(`node ${process.version}`)

const user = ensureTestUser()
if (!user) throw new Error('needs root and the unprivileged test user codexauthd-test (useradd): installing as root would prove nothing about permissions')
if (!fs.existsSync(DAEMON_BIN)) throw new Error(`${DAEMON_BIN} is missing: build first (npm test does)`)

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; dependencies: Record<string, string> }
const TOOLCHAIN = ['cc', 'gcc', 'g++', 'c++', 'make', 'cmake', 'python3', 'python']

/** `command -v name` with the test process's PATH, resolved to the real file. */
function which(name: string): string {
  return fs.realpathSync(execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim())
}

function chownR(p: string, u: TestUser): void {
  fs.lchownSync(p, u.uid, u.gid)
  if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chownR(path.join(p, e), u)
}

function findFiles(dir: string, test: (name: string) => boolean, out: string[] = []): string[] {
  if (!fs.existsSync(dir)) return out
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) findFiles(p, test, out)
    else if (test(e.name)) out.push(p)
  }
  return out
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

t.test('npm pack → npm install -g as an unprivileged user with no compiler, offline → the bins run', async (t) => {
  const work = publicTempDir('cad-pack-')
  const bin = path.join(work, 'bin')
  const prefix = path.join(work, 'prefix')
  const cache = path.join(work, 'npm-cache')
  const home = path.join(work, 'home')
  for (const d of [bin, prefix, cache, home]) fs.mkdirSync(d, { mode: 0o755 })
  const npmCli = which('npm')

  // The tarball, from the dist/ that npm test has just built.
  const tgzName = execFileSync(process.execPath, [npmCli, 'pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' }).trim()
  const tgz = path.join(work, tgzName)
  t.ok(fs.existsSync(tgz), `packed ${tgzName}`)

  // The run-time dependencies are koffi and @napi-rs/keyring (loaded only for the keyring stores),
  // each with its prebuilt package for this platform.
  t.same(Object.keys(pkg.dependencies).sort(), ['@napi-rs/keyring', 'koffi'], 'koffi and @napi-rs/keyring are the only run-time dependencies')
  const koffiVersion = pkg.dependencies.koffi!
  const keyringVersion = pkg.dependencies['@napi-rs/keyring']!
  const platformPkg = `@koromix/koffi-${process.platform}-${process.arch}`
  const libc = process.platform === 'linux' ? ((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ? '-gnu' : '-musl') : ''
  const keyringPlatformPkg = `@napi-rs/keyring-${process.platform}-${process.arch}${libc}`
  execFileSync(
    process.execPath,
    [npmCli, 'cache', 'add', `koffi@${koffiVersion}`, `${platformPkg}@${koffiVersion}`, `@napi-rs/keyring@${keyringVersion}`, `${keyringPlatformPkg}@${keyringVersion}`, '--cache', cache, '--loglevel=error'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )

  // A PATH with node, npm and sh (npm runs install scripts with sh) and nothing else.
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  fs.symlinkSync(npmCli, path.join(bin, 'npm'))
  fs.symlinkSync(which('sh'), path.join(bin, 'sh'))
  const PATH = `${bin}:${path.join(prefix, 'bin')}`
  for (const tool of TOOLCHAIN) t.notOk(PATH.split(':').some((d) => fs.existsSync(path.join(d, tool))), `no ${tool} on the user's PATH`)
  chownR(work, user)
  fs.chownSync(work, 0, 0) // the 0755 parent stays root's, as /tmp's are

  const setpriv = which('setpriv')
  const [, ...privArgs] = asUser(user)
  const env = { PATH, HOME: home, LANG: 'C.UTF-8' }
  const runAsUser = (args: string[], timeoutMs = 120_000): Promise<Ran> =>
    new Promise((resolve, reject) => {
      execFile(setpriv, [...privArgs, ...args], { env, cwd: home, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0
        if (err && code === null) reject(err)
        else resolve({ code, stdout, stderr })
      })
    })

  const before = findFiles(work, (n) => n.endsWith('.node'))
  t.same(before, [], 'no .node file anywhere before the install')
  const install = await runAsUser(['npm', 'install', '-g', '--prefix', prefix, '--cache', cache, '--offline', '--no-audit', '--no-fund', '--foreground-scripts', tgz])
  t.equal(install.code, 0, `npm install -g exits 0${install.code === 0 ? '' : `: ${install.stderr}`}`)
  t.notMatch(install.stdout + install.stderr, /gyp|cmake|rebuilding from source|compil/i, 'no build step ran')

  const installed = path.join(prefix, 'lib', 'node_modules', pkg.name)
  const modules = path.join(installed, 'node_modules')
  t.same(fs.readdirSync(modules).filter((n) => !n.startsWith('.')).sort(), ['@koromix', '@napi-rs', 'koffi'], 'only koffi and @napi-rs/keyring (and their binaries) installed beside dist/')
  t.same(fs.readdirSync(path.join(modules, '@koromix')), [path.basename(platformPkg)], `one prebuilt package: ${platformPkg}`)
  t.same(fs.readdirSync(path.join(modules, '@napi-rs')).sort(), ['keyring', path.basename(keyringPlatformPkg)], `one prebuilt keyring package: ${keyringPlatformPkg}`)
  // Every .node file is one koffi's platform package ships; nothing was built (no build/ dir).
  const nodeFiles = findFiles(work, (n) => n.endsWith('.node')).map((p) => path.relative(modules, p))
  t.ok(nodeFiles.length > 0, `prebuilt binaries: ${nodeFiles.join(', ')}`)
  t.ok(
    nodeFiles.every((p) => p.startsWith(`${platformPkg}/`) || p.startsWith(`${keyringPlatformPkg}/`)),
    'every .node file comes from a prebuilt package',
  )
  t.notOk(fs.existsSync(path.join(modules, 'koffi', 'build')), 'koffi built nothing (no build/)')
  const installedSize = findFiles(installed, () => true).reduce((n, f) => n + fs.statSync(f).size, 0)
  t.comment(`installed: ${(installedSize / 1e6).toFixed(1)} MB, tarball ${(fs.statSync(tgz).size / 1e3).toFixed(0)} kB`)

  const v = await runAsUser(['codex-authd', '--version'], 30_000)
  t.equal(v.stdout, `codex-authd ${pkg.version}\n`, 'codex-authd --version')
  const cv = await runAsUser(['codex-auth', '--version'], 30_000)
  t.equal(cv.stdout, `codex-auth ${pkg.version}\n`, 'codex-auth --version')

  // A daemon as that user, on its own CODEX_HOME, and `codex-auth status` against it.
  const codexHome = path.join(home, 'codex')
  const sockDir = path.join(home, 'run')
  for (const d of [codexHome, sockDir]) {
    fs.mkdirSync(d, { mode: 0o700 })
    fs.chownSync(d, user.uid, user.gid)
  }
  const socket = path.join(sockDir, 's.sock')
  const daemon = spawn(setpriv, [...privArgs, 'codex-authd', '--codex-home', codexHome, '--socket', socket], { env, cwd: home, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL')
  })
  let stderr = ''
  daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  await new Promise<void>((resolve, reject) => {
    onLines(daemon.stdout!, (line) => {
      if (line.includes('codex-authd started')) resolve()
    })
    void exited.then((code) => reject(new Error(`the installed daemon exited ${code} before it started: ${stderr}`)))
  })
  const s = await runAsUser(['codex-auth', '--socket', socket, '--codex-home', codexHome, '--json', 'status'], 30_000)
  t.equal(s.code, 1, 'status answers: not logged in (exit 1)')
  const status = JSON.parse(s.stdout) as { loggedIn: boolean; daemon: { pid: number } }
  t.equal(status.loggedIn, false)
  t.equal(status.daemon.pid, daemon.pid, 'answered by the installed daemon')
  daemon.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: exit 0')
})
