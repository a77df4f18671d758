// A real OpenSSH server on 127.0.0.1 for the remote-machine tests (docs/remote.md, README
// "Remote machines and containers"): its own host key and one authorized client key in a temp
// directory, the user `codexremote` as the remote machine's (scripts/test-deps.sh creates it), and
// `ssh -R <remote private dir>/authd.sock:<local socket> -o StreamLocalBindUnlink=yes` exactly as
// the README's recipe. Readiness comes from the programs' own lines (sshd's "Server listening",
// ssh's "remote forward success"), never from a sleep. Everything is torn down: the forward,
// sshd, the remote private directory. Runs as root (CI and the development machines).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { freePorts, tempDir } from './daemon.js'
import { onLines } from './lines.js'

export const REMOTE_USER = 'codexremote'

export interface TestUser {
  name: string
  uid: number
  gid: number
  home: string
}

/** A test user as the system knows it; throws (never skips) when scripts/test-deps.sh has not created it. */
export function testUser(name: string): TestUser {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' })
  const f = r.stdout.trim().split(':')
  if (r.status !== 0 || f.length < 7) throw new Error(`test user ${name} does not exist: run \`bash scripts/test-deps.sh\` as root (npm test runs it first)`)
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }
}

/**
 * argv prefix that runs a command as `u` (util-linux setpriv: real and effective ids, its groups).
 * Without NODE_OPTIONS: tap's process-info hook that it carries would write into the checkout,
 * which that user cannot.
 */
export function asUser(u: TestUser): string[] {
  return ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', '--', 'env', '-u', 'NODE_OPTIONS']
}

/** A directory of `u`'s own (0700) under its home, removed at teardown. */
export function privateDirOf(t: { teardown(fn: () => unknown): void }, u: TestUser, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(u.home, prefix))
  fs.chownSync(dir, u.uid, u.gid)
  fs.chmodSync(dir, 0o700)
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface SshForward {
  /** The forwarded socket on the "remote" side. */
  readonly remoteSocket: string
  /** Every line ssh printed (debug level 1: no secret crosses ssh's log). */
  readonly lines: string[]
  /** Cuts the forward (kills ssh); the remote socket file stays behind, as after a dropped connection. */
  cut(): Promise<void>
}

export interface SshServer {
  readonly port: number
  /** sshd's own lines (logins, forwards). */
  readonly log: string[]
  /**
   * `ssh -N -R remoteSocket:localSocket user@127.0.0.1` with StreamLocalBindUnlink=yes; resolves
   * once ssh reports the forward established.
   */
  forward(user: TestUser, remoteSocket: string, localSocket: string): Promise<SshForward>
  close(): Promise<void>
}

function keygen(file: string): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'codex-authd-test', '-f', file], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`)
}

/** Resolves with the first line of `p`'s stderr matching `re`; rejects if `p` exits first. */
function lineFrom(p: ChildProcess, lines: string[], re: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const seen = lines.find((l) => re.test(l))
    if (seen !== undefined) return resolve(seen)
    const onLine = (l: string) => {
      if (re.test(l)) {
        p.off('exit', onExit)
        resolve(l)
      }
    }
    const onExit = (code: number | null) => reject(new Error(`${what}: exited (${code}) first; its lines:\n${lines.slice(-15).join('\n')}`))
    p.stderr!.setEncoding('utf8')
    onLines(p.stderr!, onLine)
    p.once('exit', onExit)
  })
}

export async function startSshd(): Promise<SshServer> {
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((f) => fs.existsSync(f))
  if (sshd === undefined) throw new Error('sshd is not installed: run `bash scripts/test-deps.sh` as root (openssh-server)')
  // sshd's privilege separation directory; the package's service would create it.
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  const dir = tempDir('cad-ssh-')
  // sshd reads the authorized keys as the user logging in: the directory must be traversable.
  fs.chmodSync(dir, 0o755)
  keygen(path.join(dir, 'host_key'))
  keygen(path.join(dir, 'client_key'))
  fs.copyFileSync(path.join(dir, 'client_key.pub'), path.join(dir, 'authorized_keys'))
  fs.chmodSync(path.join(dir, 'authorized_keys'), 0o644)
  const [port] = await freePorts(1)
  const hostPub = fs.readFileSync(path.join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ')
  fs.writeFileSync(path.join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`)
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/host_key`,
      `PidFile ${dir}/sshd.pid`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      // /tmp is world-writable: the key file's path would fail the strict check.
      'StrictModes no',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin no',
      `AllowUsers ${REMOTE_USER}`,
      // sshd's remote Unix-socket forwards pass its remote TCP-forwarding switch too.
      'AllowTcpForwarding remote',
      'AllowStreamLocalForwarding remote',
      'StreamLocalBindUnlink yes',
      'StreamLocalBindMask 0177',
      'X11Forwarding no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  )
  const log: string[] = []
  const proc = spawn(sshd, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
  onLines(proc.stderr!, (l) => log.push(l))
  await lineFrom(proc, log, /Server listening on 127\.0\.0\.1 port/, 'sshd')
  const forwards = new Set<ChildProcess>()

  return {
    port: port!,
    log,
    async forward(user, remoteSocket, localSocket) {
      const lines: string[] = []
      const p = spawn(
        'ssh',
        [
          '-F', '/dev/null',
          '-v',
          '-N',
          '-i', path.join(dir, 'client_key'),
          '-o', 'IdentitiesOnly=yes',
          '-o', `UserKnownHostsFile=${dir}/known_hosts`,
          '-o', 'StrictHostKeyChecking=yes',
          '-o', 'BatchMode=yes',
          '-o', 'ExitOnForwardFailure=yes',
          '-o', 'StreamLocalBindUnlink=yes',
          '-p', String(port),
          '-R', `${remoteSocket}:${localSocket}`,
          `${user.name}@127.0.0.1`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      )
      forwards.add(p)
      onLines(p.stderr!, (l) => lines.push(l))
      const exited = new Promise<void>((r) => p.once('exit', () => r()))
      await lineFrom(p, lines, /remote forward success for: listen/, `ssh -R ${remoteSocket}`)
      return {
        remoteSocket,
        lines,
        async cut() {
          p.kill('SIGKILL')
          await exited
          forwards.delete(p)
        },
      }
    },
    async close() {
      for (const p of forwards) p.kill('SIGKILL')
      const exited = new Promise<void>((r) => (proc.exitCode !== null ? r() : proc.once('exit', () => r())))
      proc.kill('SIGTERM')
      await exited
    },
  }
}
