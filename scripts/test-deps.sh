#!/usr/bin/env bash
# The Debian packages the tests drive for real: systemd's socket activation and unit checker,
# tinyproxy, chromium, fish and tcsh (they read back what `codex-auth env --shell` prints),
# util-linux's flock/setpriv/unshare, bsdutils's script, iproute2, and a private Secret Service
# (dbus-daemon, gnome-keyring, libsecret-tools's secret-tool; systemd's busctl). Installs the missing ones
# when running as root (CI and these development machines); otherwise says what is missing.
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
[ "${#need[@]}" -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing Debian packages: $pkgs(install them as root: apt-get install $pkgs)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
