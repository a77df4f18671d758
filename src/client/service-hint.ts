// How to start a daemon that is not running, as this machine would (docs/contract.md#codex-auth, exit 2):
// `systemctl --user` only where the unit is installed, `launchctl` on macOS where the agent is,
// else the daemon itself. Asked only when a connection failed: nothing here runs on success.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { LAUNCHD_LABEL, LAUNCHD_PLIST, SYSTEMD_SOCKET_UNIT } from '../service-names.js'

export type ServiceSetup = { kind: 'systemd' } | { kind: 'launchd'; plist: string } | { kind: 'none' }

function absoluteOr(value: string | undefined, fallback: string | null): string | null {
  return value !== undefined && path.isAbsolute(value) ? value : fallback
}

/** The user unit directories systemd reads (systemd.unit(5)): the user's, the admin's, a package's. */
export function systemdUserUnitDirs(env: NodeJS.ProcessEnv): string[] {
  const home = absoluteOr(env.HOME, null)
  const config = absoluteOr(env.XDG_CONFIG_HOME, home !== null ? path.join(home, '.config') : null)
  const data = absoluteOr(env.XDG_DATA_HOME, home !== null ? path.join(home, '.local', 'share') : null)
  const dirs = [config, '/etc', data].filter((d): d is string => d !== null).map((d) => path.join(d, 'systemd', 'user'))
  return [...dirs, '/usr/local/lib/systemd/user', '/usr/lib/systemd/user']
}

/** Which service manager has codex-authd installed for this user, if any. */
export function serviceSetup(platform: NodeJS.Platform, env: NodeJS.ProcessEnv, exists: (file: string) => boolean = fs.existsSync): ServiceSetup {
  if (platform === 'linux') {
    return systemdUserUnitDirs(env).some((d) => exists(path.join(d, SYSTEMD_SOCKET_UNIT))) ? { kind: 'systemd' } : { kind: 'none' }
  }
  if (platform === 'darwin' && env.HOME !== undefined && path.isAbsolute(env.HOME)) {
    const plist = path.join(env.HOME, 'Library', 'LaunchAgents', LAUNCHD_PLIST)
    if (exists(plist)) return { kind: 'launchd', plist }
  }
  return { kind: 'none' }
}

/** The sentence that says how to start it. */
export function startHint(setup: ServiceSetup): string {
  const same = 'with the same --codex-home/--socket'
  switch (setup.kind) {
    case 'systemd':
      return `Start it with \`systemctl --user start ${SYSTEMD_SOCKET_UNIT}\`, or run \`codex-authd\` (${same}).`
    case 'launchd':
      return (
        `Start it with \`launchctl kickstart gui/$(id -u)/${LAUNCHD_LABEL}\` (not loaded yet: ` +
        `\`launchctl bootstrap gui/$(id -u) ${setup.plist}\`), or run \`codex-authd\` (${same}).`
      )
    case 'none':
      return `Start it with \`codex-authd\` (${same}; in a checkout: \`npm start\`), or install it as a service: \`codex-authd service install\`.`
  }
}
