#!/usr/bin/env bash
# The Debian packages the tests drive for real: systemd's socket activation and unit checker,
# tinyproxy, chromium, fish and tcsh (they read back what `codex-auth env --shell` prints),
# util-linux's flock/setpriv/unshare, bsdutils's script, iproute2, tmux (a real terminal for
# codex-auth login's live line and the daemon's pretty log), a private Secret Service
# (dbus-daemon, gnome-keyring, libsecret-tools's secret-tool; systemd's busctl), OpenSSH's server
# and client (the remote-machine tests forward the restricted socket with `ssh -R` into a second
# user's home). Installs the missing ones when running as root (CI and these development
# machines); otherwise says what is missing. Then, as root, the test user those tests run as.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
have systemd-socket-activate || need+=(systemd)
have systemd-analyze || need+=(systemd)
have flock || need+=(util-linux)
have setpriv || need+=(util-linux)
have unshare || need+=(util-linux)
have script || need+=(bsdutils)
have ip || need+=(iproute2)
have strace || need+=(strace)
have tinyproxy || need+=(tinyproxy)
have chromium || need+=(chromium)
have fish || need+=(fish)
have tcsh || need+=(tcsh)
have busctl || need+=(systemd)
have dbus-daemon || need+=(dbus-daemon)
have gnome-keyring-daemon || need+=(gnome-keyring)
have secret-tool || need+=(libsecret-tools)
have tmux || need+=(tmux)
have sshd || need+=(openssh-server)
have ssh || need+=(openssh-client)
have ssh-agent || need+=(openssh-client)
# test/support/ssh.ts: `codexremote` is the remote machine's user (ssh -R lands in its home).
# Idempotent. No password, but not locked either ('*', not '!'): sshd without PAM refuses a
# locked account even for a key.
users() {
  [ "$(id -u)" -eq 0 ] || return 0
  for u in codexremote; do
    id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --password '*' "$u"
  done
}
if [ "${#need[@]}" -eq 0 ]; then
  users
  exit 0
fi
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: $pkgs(install them as root: apt-get install $pkgs)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
users
