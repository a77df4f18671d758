// Whether other local users can get at CODEX_HOME's credentials machinery (docs/watching.md#files-the-daemon-cannot-use).
// Codex creates ~/.codex 0755 and auth.lock 0666 & ~umask: any local user can then open auth.lock
// and hold flock on it, and every login, logout and refresh commit waits for them in vain.
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Problem } from '../types.js'

/** The permission bits of the home and of auth.lock (null when it does not exist yet). Pure. */
export function exposureProblems(home: string, homeMode: number, lockMode: number | null): Problem[] {
  const problems: Problem[] = []
  const octal = (m: number): string => (m & 0o7777).toString(8)
  if ((homeMode & 0o022) !== 0) {
    problems.push({
      code: 'auth_permissions',
      message: `CODEX_HOME ${home} is writable by group or other (mode ${octal(homeMode)}): they can replace auth.json and its locks; run: chmod go-w ${home}`,
      file: home,
      line: null,
      column: null,
    })
  }
  const lock = path.join(home, 'auth.lock')
  // Opening a file is all flock needs; reaching it needs search (x) permission on the home.
  if (lockMode !== null && (homeMode & 0o011) !== 0 && (lockMode & 0o066) !== 0) {
    problems.push({
      code: 'auth_permissions',
      message:
        `${lock} can be opened by other users (mode ${octal(lockMode)}, CODEX_HOME mode ${octal(homeMode)}): any of them can hold ` +
        `the lock and block every login, logout and refresh; run: chmod 600 ${lock}`,
      file: lock,
      line: null,
      column: null,
    })
  }
  return problems
}

/** exposureProblems for the home on disk; nothing when the home cannot be looked at (reported elsewhere). */
export async function homeExposure(home: string): Promise<Problem[]> {
  let homeMode: number
  try {
    homeMode = (await fs.stat(home)).mode
  } catch {
    return []
  }
  let lockMode: number | null = null
  try {
    lockMode = (await fs.stat(path.join(home, 'auth.lock'))).mode
  } catch {
    // not created yet: the first commit creates it, and the next read reports it
  }
  return exposureProblems(home, homeMode, lockMode)
}
