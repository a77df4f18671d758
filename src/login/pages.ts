// The two pages the login server shows in the user's browser: success and error. Self-contained
// (inline CSS, no scripts, no external assets) and served with a CSP that forbids loading anything.
// Every dynamic value is HTML-escaped; no token, code or state ever appears on a page.

export const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  connection: 'close',
})

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)
}

const STYLE = `
  :root { color-scheme: light dark; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #f4f4f5; color: #18181b; }
  main { max-width: 30rem; margin: 2rem; padding: 2rem 2.5rem; background: #fff; border-radius: 12px;
         box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  h1 { font-size: 1.4rem; margin: 0 0 .75rem; display: flex; align-items: center; gap: .6rem; }
  .mark { display: inline-flex; width: 1.8rem; height: 1.8rem; border-radius: 50%; align-items: center;
          justify-content: center; color: #fff; font-size: 1.1rem; flex: none; }
  .ok .mark { background: #16a34a; } .err .mark { background: #dc2626; }
  .who { font-weight: 600; word-break: break-all; }
  .detail { color: #52525b; word-break: break-word; }
  .close { margin-top: 1.25rem; color: #52525b; font-size: .95rem; }
  @media (prefers-color-scheme: dark) { body { background: #18181b; color: #f4f4f5; } main { background: #27272a; }
    .detail, .close { color: #a1a1aa; } }
`

function page(kind: 'ok' | 'err', title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main class="${kind}">
<h1><span class="mark" aria-hidden="true">${kind === 'ok' ? '&#10003;' : '!'}</span>${escapeHtml(title)}</h1>
${body}
<p class="close">You can close this window and return to your terminal.</p>
</main>
</body>
</html>
`
}

export interface SuccessInfo {
  email: string | null
  planType: string | null
}

/** "Signed in to Codex": who is now logged in (email, plan). */
export function successPage(info: SuccessInfo): string {
  const who = info.email ?? 'your ChatGPT account'
  const plan = info.planType ? ` <span class="detail">(${escapeHtml(info.planType)} plan)</span>` : ''
  return page(
    'ok',
    'Signed in to Codex',
    `<p>You are now logged in as <span class="who">${escapeHtml(who)}</span>${plan}.</p>
<p class="detail">codex-authd saved the credentials; Codex and every tool using codex-authd will use them.</p>`,
  )
}

/** An error of the same style; `message` is shown escaped (never holds a secret). */
export function errorPage(title: string, message: string): string {
  return page('err', title, `<p class="detail">${escapeHtml(message)}</p>`)
}
