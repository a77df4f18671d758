// What `codex-auth login` shows while a browser or device login runs (docs/contract.md#codex-auth):
// the words, the live progress line and how a browser is opened. The wording is pure (a clock and
// the environment are passed in); `Progress` is the one piece that writes.

import type { LoginResult, LoginStarted } from '../rpc/contract.js'
import { escapeControls } from '../text.js'

/** `0:42`, `14:18`, `1:02:03`: minutes and seconds (hours when there are any), never negative. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = String(total % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}

/**
 * The live line: time since the login started and time left until the daemon gives up on it
 * (its `expiresAt`; the login then ends `expired`). `expiresAt` null: only the elapsed time.
 */
export function progressLine(startedAtMs: number, nowMs: number, expiresAtMs: number | null): string {
  const left = expiresAtMs === null ? '' : `, ${formatDuration(expiresAtMs - nowMs)} left`
  return `Waiting for the login to complete: ${formatDuration(nowMs - startedAtMs)} elapsed${left} (Ctrl-C to cancel)`
}

/** How a browser can be opened here: the program and its argument, or why there is none. */
export type BrowserOpener = { ok: true; command: string; args: string[] } | { ok: false; reason: string }

/**
 * macOS: `open`. Elsewhere `xdg-open`, which needs a graphical session: without DISPLAY or
 * WAYLAND_DISPLAY (ssh, a container, a server) there is no browser to open, and saying so is
 * better than a promise that one opened.
 */
export function browserOpener(url: string, platform: NodeJS.Platform, env: NodeJS.ProcessEnv): BrowserOpener {
  if (platform === 'darwin') return { ok: true, command: 'open', args: [url] }
  if (platform === 'win32') return { ok: false, reason: 'codex-auth does not open browsers on Windows' }
  if (!env.DISPLAY && !env.WAYLAND_DISPLAY) return { ok: false, reason: 'no graphical session here (neither DISPLAY nor WAYLAND_DISPLAY is set)' }
  return { ok: true, command: 'xdg-open', args: [url] }
}

/** What is done about a browser: opened (or tried), not asked for (--no-browser), or none here. */
export type BrowserPlan = { kind: 'open' } | { kind: 'not-asked' } | { kind: 'none'; reason: string }

/** The browser login's lines before the wait. Only a browser that is being opened gets "if it did not open". */
export function browserLoginLines(started: Extract<LoginStarted, { method: 'browser' }>, plan: BrowserPlan): string[] {
  let origin = started.callbackUrl
  try {
    origin = new URL(started.callbackUrl).origin
  } catch {
    // keep the URL as given
  }
  const lines = [`Starting local login server on ${origin}.`]
  if (plan.kind === 'open') lines.push('Opening your browser. If it did not open, navigate to this URL to authenticate:')
  else if (plan.kind === 'not-asked') lines.push('Navigate to this URL to authenticate:')
  else {
    lines.push(
      `No browser can be opened: ${plan.reason}.`,
      `Open this URL in a browser on a machine that can reach ${origin} (e.g. over \`ssh -L ${portOf(origin)}:localhost:${portOf(origin)}\`),`,
      'or use `codex-auth login --device` instead:',
    )
  }
  lines.push('', started.authUrl, '')
  return lines
}

function portOf(origin: string): string {
  try {
    return new URL(origin).port || '80'
  } catch {
    return '1455'
  }
}

/** The device login's lines before the wait: the URL, the code, and the QR code of the URL when given. */
export function deviceLoginLines(started: Extract<LoginStarted, { method: 'device' }>, qr: readonly string[] | null, plan: BrowserPlan): string[] {
  const lines = [
    'Follow these steps to sign in with ChatGPT using device code authorization:',
    '',
    `1. Open this link in your browser and sign in to your account${plan.kind === 'open' ? ' (opening it here too)' : ''}`,
    `   ${started.verificationUrl}`,
  ]
  if (qr !== null) lines.push('', '   or scan it with a phone:', '', ...qr.map((l) => `   ${l}`))
  lines.push('', `2. Enter this one-time code (expires at ${started.expiresAt})`, `   ${started.userCode}`, '')
  return lines
}

/** The one line that tells how a login ended (stdout when it succeeded, stderr otherwise). */
export function loginOutcome(result: LoginResult): { ok: boolean; line: string } {
  if (result.status === 'succeeded') return { ok: true, line: 'Successfully logged in' }
  if (result.status === 'cancelled' && (result.error === null || result.error.reason === 'cancelled')) return { ok: false, line: 'Login cancelled' }
  const word = result.status === 'cancelled' ? 'cancelled' : result.status === 'expired' ? 'expired' : 'failed'
  const why = result.error ? `${result.error.message} (${result.error.reason})` : result.status
  return { ok: false, line: `Login ${word}: ${why}` }
}

/**
 * The progress line on a stream. On a terminal it is rewritten in place every second (`\r` and
 * erase-line) and `note` prints a line above it; elsewhere (a pipe, a log) it is a plain line at
 * the start and then once a minute, so a log is not flooded.
 */
export class Progress {
  private timer: NodeJS.Timeout | null = null
  private shown = false

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly line: () => string,
    private readonly plainEveryMs = 60_000,
  ) {}

  private get tty(): boolean {
    return this.stream.isTTY === true
  }

  start(): void {
    this.draw()
    this.timer = setInterval(() => this.draw(), this.tty ? 1000 : this.plainEveryMs)
    this.timer.unref()
  }

  private draw(): void {
    if (this.tty) {
      this.stream.write(`\r\x1b[2K${escapeControls(this.line())}`)
      this.shown = true
    } else {
      this.stream.write(`${escapeControls(this.line())}\n`)
    }
  }

  /** Removes the live line (a terminal), so that what follows starts on a clean line. */
  clear(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[2K')
    this.shown = false
  }

  /** A line for a person above the live line. */
  note(line: string): void {
    this.clear()
    this.stream.write(`${escapeControls(line)}\n`)
    if (this.timer !== null && this.tty) this.draw()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.clear()
  }
}
