// fs-ext 2.1.1 ships no types; only what src/store/flock.ts uses is declared.
declare module 'fs-ext' {
  /** flock(2) on `fd`; throws an Error with `code` (e.g. 'EAGAIN') on failure. */
  export function flockSync(fd: number, flags: 'sh' | 'ex' | 'shnb' | 'exnb' | 'un' | number): void
  const fsExt: { flockSync: typeof flockSync }
  export default fsExt
}
