// Reading the installed systemd units the way systemd does, for the tests that run their commands.
import { promises as fs } from 'node:fs'
import path from 'node:path'

/** systemd's unquoting of one ExecStart=/ExecReload= value: "…" words, %% -> %, $$ -> $. */
export function execArgv(value: string): string[] {
  const words = value.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? []
  return words.map((w) => (w.startsWith('"') ? w.slice(1, -1).replace(/\\(.)/g, '$1') : w).replace(/%%/g, '%').replace(/\$\$/g, '$'))
}

/** The value of the first `Key=` line of a unit; throws when there is none. */
export function unitSetting(unit: string, key: string): string {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(unit)
  if (!m) throw new Error(`the unit has no ${key}= line`)
  return m[1]!
}

/** The systemd units `service install --systemd` wrote under `configHome`, as a socket activation needs them. */
export interface InstalledUnits {
  service: string
  socketUnit: string
  /** ExecStart=, unquoted as systemd does. */
  execStart: string[]
  /** ListenStream= with %t expanded to `runtime`; its directory is created (0700). */
  listen: string
  /** Every ListenStream= line so expanded, in the unit's order (the main socket, then the restricted one). */
  listens: string[]
}

export async function readInstalledUnits(configHome: string, runtime: string): Promise<InstalledUnits> {
  const dir = path.join(configHome, 'systemd', 'user')
  const service = await fs.readFile(path.join(dir, 'codex-authd.service'), 'utf8')
  const socketUnit = await fs.readFile(path.join(dir, 'codex-authd.socket'), 'utf8')
  const listens = [...socketUnit.matchAll(/^ListenStream=(.+)$/gm)].map((m) => m[1]!.replace(/%t/g, runtime))
  const listen = unitSetting(socketUnit, 'ListenStream').replace(/%t/g, runtime)
  await fs.mkdir(path.dirname(listen), { recursive: true, mode: 0o700 })
  return { service, socketUnit, execStart: execArgv(unitSetting(service, 'ExecStart')), listen, listens }
}
