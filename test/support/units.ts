// Reading the installed systemd units the way systemd does, for the tests that run their commands.

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
