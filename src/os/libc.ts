// The C library through koffi (an N-API FFI with prebuilt binaries: no compiler at install, one
// install for every Node version). Loaded on first use only: loading koffi costs about 30 ms
// (measured on the CI machine), which `--version`, `--help` and `codex-auth token` should not pay.
import os from 'node:os'

type Koffi = typeof import('koffi')

export interface Libc {
  koffi: Koffi
  lib: ReturnType<Koffi['load']>
  /** The library name that loaded, for messages. */
  name: string
}

/**
 * Where libc lives, tried in order. On Linux, `libc.so.6` is glibc's soname, and musl's loader
 * answers any `libc.*` name with itself (it never opens a file for it), so the one name serves
 * both; `libc.so` is the musl spelling, kept in case a loader differs.
 */
const LIBC_CANDIDATES: Partial<Record<NodeJS.Platform, readonly string[]>> = {
  linux: ['libc.so.6', 'libc.so'],
  darwin: ['/usr/lib/libSystem.B.dylib', 'libc.dylib'],
  freebsd: ['libc.so.7'],
}

let loaded: Libc | undefined

/** The C library, loaded once; throws naming every name tried when none loads. */
export function libc(): Libc {
  if (loaded) return loaded
  // node:module is loaded only here, for the same start-up reason.
  const { createRequire } = process.getBuiltinModule('node:module')
  const koffi = createRequire(import.meta.url)('koffi') as Koffi
  const names = LIBC_CANDIDATES[process.platform] ?? []
  const failures: string[] = []
  for (const name of names) {
    try {
      loaded = { koffi, lib: koffi.load(name), name }
      return loaded
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message}`)
    }
  }
  const tried = names.length > 0 ? `tried ${failures.join('; ')}` : `no libc name known for ${process.platform}`
  throw new Error(`cannot load the C library (${tried})`)
}

/** An Error shaped like Node's own system errors (`code` 'EBADF', `errno` negative, `syscall`). */
export function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const code = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`
  const err: NodeJS.ErrnoException = new Error(`${syscall}: ${code}`)
  err.code = code
  err.errno = -errno
  err.syscall = syscall
  return err
}
