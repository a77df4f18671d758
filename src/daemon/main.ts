// `codex-authd` entry point: parse, start, handle signals, map failures to exit codes (docs/contract.md#codex-authd).
import fs from 'node:fs'
import path from 'node:path'
import { UsageError, usageLines } from '../cli-common.js'
import { escapeControls } from '../text.js'
import { createLogger, terminalDestination } from '../log.js'
import { DaemonExit } from '../rpc/contract.js'
import { VERSION } from '../version.js'
import { StartError, errorSummary, startDaemon } from './daemon.js'
import { HELP, parseDaemonArgs } from './options.js'

async function main(argv: string[]): Promise<number> {
  let command
  try {
    command = parseDaemonArgs(argv)
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(usageLines('codex-authd', e.message, e.command).map((l) => `${escapeControls(l)}\n`).join(''))
      return DaemonExit.Config
    }
    throw e
  }
  if (command.kind === 'help') {
    process.stdout.write(HELP)
    return 0
  }
  if (command.kind === 'version') {
    process.stdout.write(`codex-authd ${VERSION}\n`)
    return 0
  }
  if (command.kind === 'service') {
    const { runServiceCommand } = await import('../service/install.js')
    // The bundle runs as `node <package>/dist/codex-authd.cjs`: that file is the daemon to install.
    const daemonPath = fs.realpathSync(process.argv[1] ?? '')
    return runServiceCommand(command.args, {
      env: process.env,
      platform: process.platform,
      stdout: (s) => process.stdout.write(s),
      stderr: (s) => process.stderr.write(s),
      nodePath: process.execPath,
      daemonPath,
      packageRoot: path.dirname(path.dirname(daemonPath)),
    })
  }

  const log = createLogger(command.options.logLevel, 1, await terminalDestination(1, process.env))
  // Start-up awaits files, locks and watches; if the loop ever ran dry before it finished, Node
  // would exit 0 without a word. Say so, and fail, instead.
  const stalled = (): void => {
    log.fatal('start-up stalled: nothing left to wait for')
    process.exit(DaemonExit.Crash)
  }
  process.once('beforeExit', stalled)
  let daemon
  try {
    daemon = await startDaemon(command.options, {
      env: process.env,
      pid: process.pid,
      uid: process.getuid?.() ?? 0,
      version: VERSION,
      log,
      limits: limitsFromEnv(process.env),
      login: loginTuningFromEnv(process.env),
      refresh: refreshTuningFromEnv(process.env),
    })
  } catch (e) {
    if (e instanceof StartError) {
      // Said once, on stderr, in words: not also as a log record on stdout (on a terminal both
      // would show; journald and launchd's log file collect both streams).
      process.stderr.write(`codex-authd: ${escapeControls(e.message)}\n`)
      return e.exitCode
    }
    throw e
  } finally {
    process.off('beforeExit', stalled)
  }

  return new Promise<number>((resolve) => {
    const shutdown = (signal: NodeJS.Signals): void => {
      daemon.stop(signal).then(
        () => resolve(DaemonExit.Ok),
        (e) => {
          log.error({ err: errorSummary(e) }, 'shutdown failed')
          resolve(DaemonExit.Crash)
        },
      )
    }
    process.once('SIGTERM', shutdown)
    process.once('SIGINT', shutdown)
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading configuration')
      void daemon.reloadConfig()
    })
  })
}

/** Hidden, for tests and benchmarks: CODEX_AUTHD_IDLE_TIMEOUT_MS shortens the idle-connection timeout. */
function limitsFromEnv(env: NodeJS.ProcessEnv): { idleTimeoutMs?: number } {
  const raw = env.CODEX_AUTHD_IDLE_TIMEOUT_MS
  const ms = raw === undefined ? NaN : Number(raw)
  return Number.isInteger(ms) && ms > 0 ? { idleTimeoutMs: ms } : {}
}

/**
 * Hidden, for tests: CODEX_AUTHD_LOGIN_TIMEOUT_MS shortens the 15-minute login expiry,
 * CODEX_AUTHD_DEVICE_INTERVAL_MS the device polling interval used when the server names none.
 */
function loginTuningFromEnv(env: NodeJS.ProcessEnv): { loginTimeoutMs?: number; deviceIntervalMs?: number } {
  const ms = (raw: string | undefined): number | undefined => {
    const n = raw === undefined ? NaN : Number(raw)
    return Number.isInteger(n) && n > 0 ? n : undefined
  }
  const out: { loginTimeoutMs?: number; deviceIntervalMs?: number } = {}
  const timeout = ms(env.CODEX_AUTHD_LOGIN_TIMEOUT_MS)
  const interval = ms(env.CODEX_AUTHD_DEVICE_INTERVAL_MS)
  if (timeout !== undefined) out.loginTimeoutMs = timeout
  if (interval !== undefined) out.deviceIntervalMs = interval
  return out
}

/**
 * Hidden, for tests: CODEX_AUTHD_LOCK_TIMEOUT_MS shortens the refresher's 5 s bound on each of
 * Codex's locks, CODEX_AUTHD_BACKOFF_SCALE multiplies its backoff delays (0.25: 250 ms, 500 ms, ...;
 * 30: a first backoff of 30 s that no loaded machine outruns).
 */
function refreshTuningFromEnv(env: NodeJS.ProcessEnv): { lockTimeoutMs?: number; backoffScale?: number } {
  const out: { lockTimeoutMs?: number; backoffScale?: number } = {}
  const lock = Number(env.CODEX_AUTHD_LOCK_TIMEOUT_MS ?? NaN)
  const scale = Number(env.CODEX_AUTHD_BACKOFF_SCALE ?? NaN)
  if (Number.isInteger(lock) && lock > 0) out.lockTimeoutMs = lock
  if (Number.isFinite(scale) && scale > 0) out.backoffScale = scale
  return out
}

process.on('uncaughtException', (e) => {
  process.stderr.write(`codex-authd: crashed: ${errorSummary(e).type}\n`)
  process.exit(DaemonExit.Crash)
})

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`codex-authd: crashed: ${errorSummary(e).type}\n`)
    process.exit(DaemonExit.Crash)
  },
)
