// `codex-auth sink` and `codex-auth exec --remote` as another user (test/support/ssh.ts), with
// their stderr lines to wait on. Nothing here prints a token: the lines are scanned for the
// registered secrets by the tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { CLI_BIN } from './daemon.js'
import { onLines } from './lines.js'
import { registerSecret } from './secrets.js'
import { asUser, type TestUser } from './ssh.js'

export interface UserProcess {
  proc: ChildProcess
  /** stderr lines so far */
  lines: string[]
  stdout: string
  /** Resolves with the first stderr line (already seen or to come) matching `re`; rejects if the process ends first. */
  line(re: RegExp, what: string): Promise<string>
  /** Resolves with the exit code once it has ended. */
  exited: Promise<number | null>
  stop(): Promise<number | null>
}

/** `codex-auth ARGS` as `user` with HOME = its home and `env`; stdin `input`, else closed. */
export function cliAs(user: TestUser, args: string[], env: Record<string, string>, input?: string): UserProcess {
  const proc = spawn(asUser(user)[0]!, [...asUser(user).slice(1), process.execPath, CLI_BIN, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home, LANG: 'C.UTF-8', ...env },
    cwd: user.home,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  })
  if (input !== undefined) {
    registerSecret(input.trim(), 'API key (stdin)')
    proc.stdin!.on('error', () => {})
    proc.stdin!.end(input)
  }
  const lines: string[] = []
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = []
  const p: UserProcess = {
    proc,
    lines,
    stdout: '',
    exited: new Promise((r) => proc.once('close', (code) => r(code))),
    line(re, what) {
      const seen = lines.find((l) => re.test(l))
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve })
        void p.exited.then((code) => reject(new Error(`${what}: codex-auth ${args[0]} exited (${code}) first; stderr:\n${lines.join('\n')}`)))
      })
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      return p.exited
    },
  }
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (p.stdout += d))
  onLines(proc.stderr!, (l) => {
    lines.push(l)
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.re.test(l)) waiters.splice(i, 1)[0]!.resolve(l)
    }
  })
  return p
}
