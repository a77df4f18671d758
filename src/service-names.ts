// The names under which `codex-authd service install` registers the daemon (src/service/install.ts),
// shared with the client, whose "not running" hint names the command that starts it.

export const SYSTEMD_SOCKET_UNIT = 'codex-authd.socket'
export const SYSTEMD_SERVICE_UNIT = 'codex-authd.service'
export const LAUNCHD_LABEL = 'com.github.codex-authd'
export const LAUNCHD_PLIST = `${LAUNCHD_LABEL}.plist`
