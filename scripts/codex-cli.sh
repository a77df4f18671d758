#!/usr/bin/env bash
# The real Codex CLI for the interop tests, installed into .cache/codex-cli/ (gitignored) from
# test/codex-cli/package.json and its lockfile, so that the version and its platform package never
# drift. It is not a devDependency: the platform binary is 424 MB, and `npm ci && npm start` should
# not fetch it for someone who only runs the daemon. `npm test` runs this first (pretest);
# when the installed copy matches the committed lockfile it only checks and returns.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/test/codex-cli"
dest="$root/.cache/codex-cli"
want=$(node -p 'require(process.argv[1]).dependencies["@openai/codex"]' "$src/package.json")

installed() {
  [ -x "$dest/node_modules/.bin/codex" ] &&
    cmp -s "$src/package-lock.json" "$dest/package-lock.json" &&
    [ "$(node -p 'require(process.argv[1]).version' "$dest/node_modules/@openai/codex/package.json" 2>/dev/null)" = "$want" ]
}

if installed; then
  exit 0
fi
echo "codex-cli: installing @openai/codex $want into ${dest#"$root"/} (test/codex-cli/package-lock.json)" >&2
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# Its own npm ci: the lockfile pins the wrapper and the platform package by integrity. The Codex
# packages have no install scripts.
(cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
if ! installed; then
  echo "codex-cli: the install did not produce $dest/node_modules/.bin/codex at $want" >&2
  exit 1
fi
