// `codex-auth status` in words (docs/contract.md#codex-auth): problems first, with what to run;
// then Codex 0.171's own headline; then method, account, token times, where the credential comes
// from and the daemon. Pure: the clock and the service setup are passed in. Never a secret (the
// API key only masked, and only in the headline).

import type { Status, StatusProblem } from '../rpc/contract.js'
import { LAUNCHD_LABEL, SYSTEMD_SERVICE_UNIT } from '../service-names.js'
import { statusHeadline } from './cli-util.js'
import type { ServiceSetup } from './service-hint.js'

export interface StatusContext {
  /** now, in ms since the epoch (the relative times) */
  now: number
  /** how the daemon runs here, for "change the daemon's environment" */
  setup: ServiceSetup
}

/** `in 5 min`, `2 h ago`, `in 9 days`: a coarse distance for a person. */
export function relativeTime(iso: string, now: number): string {
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return 'unknown'
  const d = t - now
  const a = Math.abs(d)
  const words =
    a < 60_000 ? `${Math.round(a / 1000)} s` : a < 3_600_000 ? `${Math.round(a / 60_000)} min` : a < 172_800_000 ? `${Math.round(a / 3_600_000)} h` : `${Math.round(a / 86_400_000)} days`
  return d >= 0 ? `in ${words}` : `${words} ago`
}

const when = (iso: string, now: number): string => `${iso} (${relativeTime(iso, now)})`

function where(p: StatusProblem): string {
  if (!p.file) return ''
  return ` [${p.file}${p.line !== null ? `:${p.line}${p.column !== null ? `:${p.column}` : ''}` : ''}]`
}

/** What to run about a problem, when its message does not already say (auth_permissions names its chmod). */
export function problemHint(p: StatusProblem, status: Status): string | null {
  const file = p.file ?? 'the file'
  switch (p.code) {
    case 'auth_unreadable':
      return `Fix ${file}, or replace it: \`codex-auth login\` writes a new one, \`codex-auth logout\` removes it.`
    case 'config_invalid':
      return `Fix ${file} (defaults are used meanwhile); codex-authd reads it again when it changes.`
    case 'home_invalid':
      return `Make ${status.settings.codexHome} lead to a directory again; codex-authd looks again on its own, or at once on \`kill -HUP ${status.daemon.pid}\`.`
    case 'home_owned':
      return `Point ${status.settings.codexHome} back at its own directory, or use the daemon that serves ${status.settings.codexHomeTarget ?? 'the new one'}.`
    case 'policy_conflict':
      return 'Log in with a method config.toml allows (`codex-auth login`, or `--with-api-key`), or change forced_login_method / forced_chatgpt_workspace_id.'
    case 'mode_unsupported':
      return '`codex-auth login` writes a credential codex-authd serves.'
    default:
      return null
  }
}

/** How to change or remove an API key that comes from the daemon's environment, as it runs here. */
export function envKeyHint(setup: ServiceSetup): string {
  switch (setup.kind) {
    case 'systemd':
      return (
        'To change or remove it, edit the service\'s environment (its EnvironmentFile, ~/.config/codex-authd/env, or a drop-in: ' +
        `\`systemctl --user edit ${SYSTEMD_SERVICE_UNIT}\`), then \`systemctl --user restart ${SYSTEMD_SERVICE_UNIT}\`.`
      )
    case 'launchd':
      return `To change or remove it, edit EnvironmentVariables in ${setup.plist}, then \`launchctl kickstart -k gui/$(id -u)/${LAUNCHD_LABEL}\`.`
    case 'none':
      return 'To change or remove it, restart codex-authd with another OPENAI_API_KEY, or none, in its environment.'
  }
}

/** The lines that must not be missed: problems (with what to run) and a refresh that failed for good. */
export function attentionLines(status: Status): string[] {
  const lines: string[] = []
  const r = status.refresh
  if (r.state === 'failed') {
    const why = r.lastError ? `${r.lastError.message} (${r.lastError.reason})` : 'unknown error'
    lines.push(`Token refresh failed: ${why}`, '  Run `codex-auth login` to log in again.')
  }
  for (const p of status.problems) {
    lines.push(`Problem (${p.code}): ${p.message}${where(p)}`)
    const hint = problemHint(p, status)
    if (hint !== null) lines.push(`  ${hint}`)
  }
  return lines
}

/** Every line of `codex-auth status`. `apiKey`: the served key, for the headline's mask only. */
export function statusLines(status: Status, apiKey: string | null, ctx: StatusContext): string[] {
  const attention = attentionLines(status)
  const lines = attention.length > 0 ? [...attention, ''] : []
  lines.push(statusHeadline(status, apiKey))
  const detail = (label: string, text: string) => lines.push(`  ${`${label}:`.padEnd(14)}${text}`)

  if (!status.loggedIn || status.mode === null) {
    lines.push(
      '  Log in with `codex-auth login` (a browser), `codex-auth login --device` (a code, for a machine',
      '  without a browser) or `printenv OPENAI_API_KEY | codex-auth login --with-api-key`.',
    )
  } else if (status.mode === 'chatgpt') {
    detail('Method', 'ChatGPT')
    const a = status.account
    if (a !== null) {
      const parts = [a.email ?? '(no email)', a.planType !== null ? `plan ${a.planType}` : 'plan unknown']
      if (a.accountId !== null) parts.push(`account ${a.accountId}`)
      detail('Account', parts.join(', '))
    }
    const t = status.tokens
    if (t !== null) {
      if (t.expiresAt === null) detail('Access token', 'no expiry in the token')
      else detail('Access token', `${Date.parse(t.expiresAt) > ctx.now ? 'valid until' : 'expired at'} ${when(t.expiresAt, ctx.now)}`)
      if (t.nextRefreshAt !== null) detail('Next refresh', when(t.nextRefreshAt, ctx.now))
      if (t.lastRefresh !== null) detail('Last refresh', when(t.lastRefresh, ctx.now))
    }
  } else {
    detail('Method', 'API key')
    if (status.source === 'env') {
      detail('API key', "from codex-authd's environment (OPENAI_API_KEY), not from a file")
      lines.push(`  ${envKeyHint(ctx.setup)}`)
    } else if (status.source === 'auth.json') {
      detail('API key', `from auth.json; \`codex-auth login --with-api-key\` replaces it, \`codex-auth logout\` removes it`)
    } else if (status.source !== null) {
      detail('API key', `from ${status.source}`)
    }
  }

  const r = status.refresh
  if (r.state === 'refreshing') detail('Refresh', 'running now')
  else if (r.state === 'backoff') {
    const why = r.lastError ? `${r.lastError.message} (${r.lastError.reason})` : 'unknown error'
    const next = r.nextAttemptAt !== null ? `; next attempt ${when(r.nextAttemptAt, ctx.now)}` : ''
    detail('Refresh', `backing off after: ${why}${next}. \`codex-auth refresh\` tries now.`)
  }

  const s = status.settings
  const home = s.codexHomeTarget !== null && s.codexHomeTarget !== s.codexHome ? `${s.codexHome} -> ${s.codexHomeTarget}` : s.codexHome
  detail('Credentials', `${status.source !== null ? `served from ${status.source}` : 'none served'}; store "${s.credentialsStore}"; CODEX_HOME ${home}`)
  const d = status.daemon
  detail('Daemon', `codex-authd ${d.version}, pid ${d.pid}, socket ${d.socket}${d.activated ? ' (socket-activated)' : ''}, since ${d.startedAt}`)
  return lines
}

/**
 * `status --json`: the daemon's Status with `problems` first, so that a broken file stands out at
 * the top of the JSON as it does in the text. The same fields and values.
 */
export function statusJson(status: Status): Status {
  const { problems, ...rest } = status
  return { problems, ...rest }
}
