// A real terminal for tests: a private tmux server (its own socket, nothing shared with a user's
// tmux), one window per command, the screen read back with capture-pane. scripts/test-deps.sh
// installs tmux. Wait on the screen with `screenMatches` (until.ts), never with sleeps.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { tempDir } from './daemon.js'
import { until } from './until.js'

export interface Terminal {
  /** Runs `command` (sh) in a new window of `cols` columns; `EXIT=<status>` is printed when it ends. */
  run(name: string, command: string, opts?: { env?: Record<string, string>; cols?: number }): void
  /** The window's screen and scrollback as text (wrapped lines joined); `escapes`: with colours. */
  screen(name: string, escapes?: boolean): string
  /** Waits until the screen matches, and returns the match. */
  screenMatches(name: string, re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  keys(name: string, ...keys: string[]): void
  close(): void
}

/** Quotes a word for sh. */
export const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

export function terminal(t: { teardown(fn: () => unknown): void }): Terminal {
  const socket = path.join(tempDir('cad-tmux-'), 'tmux.sock')
  // The server's environment is every window's: no DISPLAY (no browser here), a colour terminal.
  const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', TERM: 'xterm-256color', HOME: tempDir('cad-tmux-home-'), LANG: 'C.UTF-8' }
  const tmux = (args: string[]): string => {
    const r = spawnSync('tmux', ['-S', socket, '-f', '/dev/null', ...args], { encoding: 'utf8', env: base })
    if (r.error) throw new Error(`tmux could not run (scripts/test-deps.sh installs it): ${r.error.message}`)
    if (r.status !== 0) throw new Error(`tmux ${args[0]}: ${r.stderr.trim()}`)
    return r.stdout
  }
  let started = false
  const term: Terminal = {
    run(name, command, opts = {}) {
      const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${sq(v)}`).join(' ')
      // The shell traps SIGINT (a trap, unlike an ignore, is reset for the command): Ctrl-C reaches
      // the command, and the shell lives on to print its status.
      const shell = `${env ? `env ${env} ` : ''}sh -c ${sq(`trap : INT; ${command}; echo "EXIT=$?"; exec sleep 3600`)}`
      const size = ['-x', String(opts.cols ?? 160), '-y', '60']
      if (!started) {
        tmux(['new-session', '-d', '-s', 'tests', '-n', name, ...size, shell])
        started = true
      } else {
        tmux(['new-window', '-d', '-t', 'tests', '-n', name, shell])
      }
    },
    screen(name, escapes = false) {
      return tmux(['capture-pane', '-p', '-J', ...(escapes ? ['-e'] : []), '-S', '-500', '-t', `tests:${name}`])
    },
    screenMatches(name, re, timeoutMs = 30_000) {
      return until(`the screen of ${name} to match ${re}`, () => term.screen(name).match(re), timeoutMs, 50)
    },
    keys(name, ...keys) {
      tmux(['send-keys', '-t', `tests:${name}`, ...keys])
    },
    close() {
      if (started) spawnSync('tmux', ['-S', socket, 'kill-server'], { env: base })
      started = false
    },
  }
  t.teardown(() => term.close())
  return term
}
