// The package version, inlined by the bundler (scripts/build.mjs `define`); '0.0.0-dev' when the
// sources run unbundled under the test loader.
declare const CODEX_AUTHD_VERSION: string | undefined

export const VERSION: string = typeof CODEX_AUTHD_VERSION === 'string' ? CODEX_AUTHD_VERSION : '0.0.0-dev'

/**
 * The Codex CLI release whose auth.json format, locks and refresh requests this package was
 * verified against (docs/codex-compat.md); the interop tests run exactly this version, and
 * `codex-auth doctor` warns when the `codex` on PATH is another.
 */
export const CODEX_VERIFIED_VERSION = '0.171.0'
