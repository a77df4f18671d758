#!/usr/bin/env bash
# Reruns the measurement behind docs/keyring.md: how the real Codex CLI (the pinned
# .cache/codex-cli) uses cli_auth_credentials_store = "keyring" and "auto" against a real Secret
# Service (gnome-keyring-daemon) in a private D-Bus session, and whether @napi-rs/keyring can read
# and write the same entry. Not part of the test suite.
#
# Needs: root (unshare -n keeps Codex off the network); Debian packages gnome-keyring,
# libsecret-tools, dbus-daemon (dbus), dbus-bin (dbus-run-session, dbus-monitor, dbus-send),
# strace; `bash scripts/codex-cli.sh` run once; and for the interop part @napi-rs/keyring
# installed OUTSIDE the repo: `mkdir -p /tmp/kr && cd /tmp/kr && npm i @napi-rs/keyring`
# (set NAPI_KEYRING_DIR to another folder if you installed it elsewhere).
#
# Usage: sudo bash scripts/measure-keyring.sh [OUT_DIR]   (default: a new /tmp/measure-keyring.*)
# Prints a summary; OUT_DIR keeps the strace and dbus-monitor logs of each step. The API keys are
# made up, so printing them is harmless; payloads are still printed with the key masked.
set -euo pipefail

if [ "${1:-}" != "--inner" ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  out=${1:-$(mktemp -d /tmp/measure-keyring.XXXXXX)}
  mkdir -p "$out"
  codex=$(find -L "$root/.cache/codex-cli/node_modules/@openai" -path '*/bin/codex' -type f | head -1)
  [ -x "$codex" ] || { echo "no Codex binary: run bash scripts/codex-cli.sh" >&2; exit 2; }
  for tool in unshare dbus-run-session dbus-monitor dbus-send gnome-keyring-daemon secret-tool strace node; do
    command -v "$tool" >/dev/null || { echo "missing $tool (see the header of $0)" >&2; exit 2; }
  done
  # The whole run shares one network namespace with no interface up: Codex cannot reach the
  # network, and D-Bus uses a path socket (Debian's session.conf), which works across it anyway.
  exec unshare -n dbus-run-session -- bash "$0" --inner "$out" "$codex" "${NAPI_KEYRING_DIR:-/tmp/kr}"
fi

out=$2 codex=$3 napi=$4
bus=$DBUS_SESSION_BUS_ADDRESS
export HOME=$out/home XDG_RUNTIME_DIR=$out/run RUST_LOG=codex_login=debug,codex_core::auth=debug
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"

# A "login" collection with an empty password, unlocked, so nothing ever prompts. In the
# foreground so that its pid is ours to stop, freeze and end.
gnome-keyring-daemon --foreground --unlock --components=secrets < <(printf '\n') >/dev/null 2>&1 &
gk_pid=$!
for _ in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q true && break
  sleep 0.1
done
# Every call to the Secret Service, every signal it emits, and our step markers.
dbus-monitor --session "type='method_call',destination='org.freedesktop.secrets'" \
  "type='signal',sender='org.freedesktop.secrets'" \
  "type='signal',interface='org.measure'" >"$out/dbus.log" 2>&1 &
mon_pid=$!
cleanup() { kill -CONT "$gk_pid" 2>/dev/null || true; kill "$mon_pid" "$gk_pid" 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5

SERVICE="Codex Auth"
echo 0 >"$out/.step"
mask() { sed -E 's/(sk-[A-Za-z0-9]{2})[A-Za-z0-9-]*/\1…/g'; }
account_of() { # cli|<first 16 hex of sha256(canonical CODEX_HOME)>
  printf 'cli|%s' "$(printf '%s' "$(realpath "$1")" | sha256sum | cut -c1-16)"
}
newhome() { # newhome NAME STORE -> a fresh CODEX_HOME with that store in config.toml
  local h=$out/$1; rm -rf "$h"; mkdir -p "$h"
  [ -n "$2" ] && printf 'cli_auth_credentials_store = "%s"\n' "$2" >"$h/config.toml"
  echo "$h"
}
mark() { # a marker in the dbus log so each step's calls can be found
  DBUS_SESSION_BUS_ADDRESS=$bus dbus-send --session --type=signal /measure org.measure.Step "string:$1" 2>/dev/null || true
}
run() { # run HOME LABEL codex-args... (stdin passed through); strace into $out/NN-LABEL.strace
  local h=$1 label=$2 step; shift 2
  step=$(($(cat "$out/.step") + 1)); echo "$step" >"$out/.step" # runs in subshells too
  local tag; tag=$(printf '%02d-%s' "$step" "$label")
  mark "$tag"
  echo "### $tag: codex $*"
  set +e
  CODEX_HOME=$h strace -f -qq -o "$out/$tag.strace" -e trace=file,flock,add_key,keyctl,request_key \
    "$codex" "$@" >"$out/$tag.out" 2>&1
  local rc=$?
  set -e
  grep -v -E '^\s*$|^[0-9T:.Z-]+ +(TRACE|DEBUG)|could not create PATH aliases' "$out/$tag.out" | mask | sed 's/^/  | /' | head -8 || true
  echo "  exit $rc"
  # Files under CODEX_HOME (and any lock) Codex touched, in order, without the noise of /proc etc.
  # (not config.toml, .env, agents/, log/: every command reads those whatever the store)
  grep -E "\"$h/|\.lock|keyctl|add_key|request_key" "$out/$tag.strace" \
    | grep -v -E "\"$h/(config\.toml|\.env|agents|log)" \
    | sed -E "s#$h#\$CODEX_HOME#g; s/^[0-9]+ +//; s/0x[0-9a-f]+/…/g" | sed 's/^/  strace /' || true
}
entry() { # entry HOME -> the entry's attributes and masked payload, or "no entry"
  # The Rust keyring crate names the account attribute "username" (and adds target=default).
  local acct; acct=$(account_of "$1")
  local s; s=$(secret-tool search --all service "$SERVICE" username "$acct" 2>&1 || true)
  if [ -z "$s" ]; then echo "  entry: none for account $acct"; else echo "$s" | mask | sed 's/^/  entry: /'; fi
  echo "  auth.json: $([ -e "$1/auth.json" ] && echo "present ($(stat -c %a "$1/auth.json"))" || echo absent)"
}

echo "== Codex $("$codex" --version) against gnome-keyring $(gnome-keyring-daemon --version | awk 'NR == 1 {print $2}'), out: $out"

echo; echo "== 1. keyring: API-key login, status, logout"
h=$(newhome k keyring)
echo "  expected account: $(account_of "$h")"
printf 'sk-measureKEYRINGaaaa0001\n' | run "$h" login-keyring login --with-api-key; entry "$h"
run "$h" status-keyring login status
run "$h" logout-keyring logout; entry "$h"

echo; echo "== 2. auto: API-key login, status, logout"
h=$(newhome a auto)
printf 'sk-measureAUTObbbbbbb0002\n' | run "$h" login-auto login --with-api-key; entry "$h"
run "$h" status-auto login status
run "$h" logout-auto logout; entry "$h"

echo; echo "== 3. a stale auth.json (from file mode) beside an entry"
h=$(newhome s file)
printf 'sk-measureSTALEfile0003\n' | run "$h" login-file login --with-api-key; entry "$h"
printf 'cli_auth_credentials_store = "keyring"\n' >"$h/config.toml"
run "$h" status-keyring-nothing login status
cp "$h/auth.json" "$out/stale-auth.json"
printf 'sk-measureENTRYkey0004\n' | run "$h" login-keyring-over-file login --with-api-key; entry "$h"
cp -p "$out/stale-auth.json" "$h/auth.json"
echo "  (auth.json put back: the entry holds ENTRY, the file holds STALE)"
run "$h" status-keyring-both login status
printf 'cli_auth_credentials_store = "auto"\n' >"$h/config.toml"
run "$h" status-auto-both login status
printf 'cli_auth_credentials_store = "file"\n' >"$h/config.toml"
run "$h" status-file-both login status
printf 'cli_auth_credentials_store = "auto"\n' >"$h/config.toml"
run "$h" logout-auto-both logout; entry "$h"

echo; echo "== 4. a payload longer than 1200 characters (is the entry split in chunks?)"
h=$(newhome l keyring)
printf 'sk-measureLONG%s\n' "$(head -c 1500 /dev/zero | tr '\0' x)" | run "$h" login-long login --with-api-key
secret-tool search --all service "$SERVICE" 2>/dev/null | grep -E '^(attribute\.username|label) ' | sort | uniq -c | sed 's/^/  /'
printf '%s' "$(secret-tool lookup service "$SERVICE" username "$(account_of "$h")")" | wc -c | sed 's/^/  stored length: /'
run "$h" status-long login status
run "$h" logout-long logout

echo; echo "== 5. no Secret Service at all (no D-Bus session bus)"
for store in keyring auto; do
  h=$(newhome "n$store" "$store")
  printf 'sk-measureNOBUS%s0005\n' "$store" | DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent \
    run "$h" "login-$store-nobus" login --with-api-key; entry "$h"
  DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent run "$h" "status-$store-nobus" login status
  ( unset DBUS_SESSION_BUS_ADDRESS; run "$h" "status-$store-nobus-unset" login status )
done

echo; echo "== 5b. a symlinked CODEX_HOME: is the account the hash of the link or of its target?"
h=$(newhome sym keyring); ln -sfn "$h" "$out/sym-link"
printf 'sk-measureSYMLINK0010\n' | run "$out/sym-link" login-symlink login --with-api-key >/dev/null
link_acct="cli|$(printf '%s' "$out/sym-link" | sha256sum | cut -c1-16)"
for a in "$(account_of "$h")" "$link_acct"; do
  printf '  %s: %s\n' "$a" "$(secret-tool lookup service "$SERVICE" username "$a" >/dev/null 2>&1 && echo found || echo absent)"
done
echo "  (the first is sha256 of the target, the second of the link path)"
CODEX_HOME=$out/sym-link "$codex" logout >/dev/null 2>&1 || true

echo; echo "== 6. @napi-rs/keyring interop (Entry.withTarget(\"default\", ...), store pinned to secret-service)"
napi_js() { # napi_js STEP-LABEL 'js using entry()' : runs with the entry Codex would use for $acct
  mark "napi-$1"
  NODE_PATH=$napi/node_modules ACCT=$acct node -e '
    const t0 = process.hrtime.bigint();
    const keyring = require("@napi-rs/keyring");
    const ms = (a, b) => (Number(b - a) / 1e6).toFixed(1);
    const opts = { linux: { store: "secret-service" } }; // no silent fallback to keyutils
    const entry = () => keyring.Entry.withTarget("default", "Codex Auth", process.env.ACCT, opts);
    const mask = (v) => (v ?? "null").replace(/(sk-..)[A-Za-z0-9-]*/g, "$1…");
    const loaded = process.hrtime.bigint();
    '"$2"
}
if [ -d "$napi/node_modules/@napi-rs/keyring" ]; then
  echo "  package: $(du -sh "$napi/node_modules/@napi-rs" | cut -f1) on disk ($(ls "$napi/node_modules/@napi-rs" | tr '\n' ' '))"
  h=$(newhome i keyring); acct=$(account_of "$h")
  napi_js write 'const t1 = process.hrtime.bigint();
    entry().setPassword(JSON.stringify({ auth_mode: "apikey", OPENAI_API_KEY: "sk-measureNAPIwrote0006" }));
    console.log(`  napi: require ${ms(t0, loaded)} ms, first setPassword ${ms(t1, process.hrtime.bigint())} ms`);'
  entry "$h"
  run "$h" status-napi-wrote login status
  printf 'sk-measureCODEXwrote0007\n' | run "$h" login-codex-over-napi login --with-api-key
  napi_js read 'const t1 = process.hrtime.bigint(); const v = entry().getPassword();
    console.log(`  napi read (${ms(t1, process.hrtime.bigint())} ms): ${mask(v)}`);'
  napi_js delete 'console.log("  napi deleteCredential:", entry().deleteCredential());'
  run "$h" status-napi-deleted login status
  napi_js read-missing 'console.log("  napi read of a missing entry:", entry().getPassword());'
  echo "  without the pinned store, a missing D-Bus session is not an error (kernel keyutils fallback):"
  DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent NODE_PATH=$napi/node_modules node -e '
    const { Entry } = require("@napi-rs/keyring");
    const e = new Entry("Codex Auth", "cli|measure-fallback");
    const tryIt = (f) => { try { return "-> " + JSON.stringify(f()) } catch (err) { return "threw " + err.message } };
    console.log("    unpinned: getPassword", tryIt(() => e.getPassword()), "; setPassword", tryIt(() => e.setPassword("x")),
      "; getPassword", tryIt(() => e.getPassword()));
    try { new Entry("Codex Auth", "cli|measure-fallback", { linux: { store: "secret-service" } }).getPassword() }
    catch (err) { console.log("    pinned: throws", err.message) }'
else
  echo "  skipped: no @napi-rs/keyring in $napi (see the header)"
fi

echo; echo "== 7. Codex replacing an existing entry: which signals does the Secret Service emit?"
h=$(newhome r keyring)
printf 'sk-measureFIRST0008\n' | run "$h" login-first login --with-api-key >/dev/null
printf 'sk-measureSECOND0009\n' | run "$h" login-replace login --with-api-key >/dev/null
run "$h" logout-replace logout >/dev/null
sleep 0.3

awk '/member=Step/ { getline; gsub(/"/, "", $2); step=$2; next }
     step ~ /login-first|login-replace|logout-replace/ && /^signal/ && /Secret|PropertiesChanged/ {
       match($0, /member=[A-Za-z]+/); print "  " step ": signal " substr($0, RSTART + 7, RLENGTH - 7) }
     step ~ /login-replace/ && /member=(SetSecret|CreateItem)/ { match($0, /member=[A-Za-z]+/); print "  " step ": call " substr($0, RSTART + 7, RLENGTH - 7) }' "$out/dbus.log"

echo; echo "== 8. a Secret Service that does not answer (gnome-keyring-daemon stopped with SIGSTOP)"
h=$(newhome f auto)
printf '{"OPENAI_API_KEY":"sk-measureFROZENfile","auth_mode":"apikey"}' >"$h/auth.json"
kill -STOP "$gk_pid"
for store in auto keyring; do
  printf 'cli_auth_credentials_store = "%s"\n' "$store" >"$h/config.toml"
  t0=$(date +%s%N)
  set +e; CODEX_HOME=$h timeout 30 "$codex" login status >"$out/frozen-$store.out" 2>&1; rc=$?; set -e
  echo "  $store: codex login status exit $rc after $(( ($(date +%s%N) - t0) / 1000000 )) ms (124 = still blocked, killed at 30 s)"
done
if [ -d "$napi/node_modules/@napi-rs/keyring" ]; then
  acct=$(account_of "$h")
  napi_js frozen 'for (const [name, call] of [["new AsyncEntry", () => new keyring.AsyncEntry("Codex Auth", process.env.ACCT, opts)], ["Entry.getPassword", () => entry().getPassword()]]) {
      const t1 = process.hrtime.bigint();
      try { call(); console.log(`  napi ${name}: returned after ${ms(t1, process.hrtime.bigint())} ms`) }
      catch (err) { console.log(`  napi ${name}: threw after ${ms(t1, process.hrtime.bigint())} ms, blocking the thread: ${err.message.slice(0, 60)}…`) }
    }'
fi
kill -CONT "$gk_pid"

echo; echo "== D-Bus: Secret Service calls per step (from dbus.log)"
sleep 0.3
awk '/member=Step/ { getline; gsub(/"/, "", $2); step=$2; next }
     /method call|signal/ && /Secret/ { match($0, /member=[A-Za-z]+/); m=substr($0, RSTART+7, RLENGTH-7); if (step != "") n[step" "m]++ }
     END { for (k in n) print "  " k, n[k] }' "$out/dbus.log" | sort
