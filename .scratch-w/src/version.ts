// The package version, inlined by the bundler (scripts/build.mjs `define`); '0.0.0-dev' when the
// sources run unbundled under the test loader.
declare const CODEX_AUTHD_VERSION: string | undefined

export const VERSION: string = typeof CODEX_AUTHD_VERSION === 'string' ? CODEX_AUTHD_VERSION : '0.0.0-dev'
