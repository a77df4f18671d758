// The daemon's log for a person at a terminal: pino-pretty's coloured one-line records instead of
// JSON. Loaded only when stdout is a terminal: built as dist/log-pretty.cjs beside the daemon
// (scripts/build.mjs), so a daemon logging JSON (journald, a file, a pipe) never loads it.
import pinoPretty from 'pino-pretty'
import type { DestinationStream } from 'pino'

/**
 * A synchronous destination (a `sync` SonicBoom on `fd`, not a worker transport): a line is on the
 * terminal before the call that logged it returns, so nothing is lost at exit. pino redacts before
 * this formats, so secrets stay `[redacted]` (src/log.ts).
 */
export function prettyDestination(fd: number, colorize: boolean): DestinationStream {
  return pinoPretty({ sync: true, destination: fd, colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true })
}
