// Fake ChatGPT auth.json files and the two ways writers put a file on disk. Plain ESM JavaScript so
// that both the TypeScript tests and the benchmark scripts (plain Node, no TypeScript) can import
// it; its types are in auth-files.d.mts. Nothing here is signed or secret.
import fs from 'node:fs'
import path from 'node:path'

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64url')

/** An obviously fake JWT (alg none, fake signature). Tests use tokens.ts's fakeJwt, which also registers it as a secret. */
export function unsignedJwt(payload) {
  return `${b64(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64(JSON.stringify(payload))}.fake-signature`
}

const AUTH_CLAIM = 'https://api.openai.com/auth'

/**
 * A fresh ChatGPT auth.json (a 30-day access token issued now, so no refresh is due) with `tag` in
 * its claims, account and refresh token. `jwt` makes the access and id tokens.
 */
export function fakeAuth(tag, { apiKey = null, jwt = unsignedJwt } = {}) {
  const now = Math.floor(Date.now() / 1000)
  const account = `acc-${tag}`
  const access = jwt({ exp: now + 30 * 86400, iat: now, tag, [AUTH_CLAIM]: { chatgpt_account_id: account } })
  const id = jwt({ email: `${tag}@example.com`, [AUTH_CLAIM]: { chatgpt_plan_type: 'plus', chatgpt_account_id: account } })
  const json = {
    auth_mode: 'chatgpt',
    OPENAI_API_KEY: apiKey,
    tokens: { id_token: id, access_token: access, refresh_token: `rt-fake-${tag}`, account_id: account },
    last_refresh: new Date().toISOString(),
  }
  return { json, text: JSON.stringify(json, null, 2) + '\n', access }
}

let tmpSeq = 0
/** Writes a temp file (0600) beside `file` and renames it into place, as Codex does. */
export function renameInto(file, text) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${tmpSeq++}.tmp`)
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  fs.renameSync(tmp, file)
}

/** Truncates and writes in place, as older Codex versions did (same inode). */
export function writeInPlace(file, text) {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600)
  try {
    fs.writeSync(fd, text)
  } finally {
    fs.closeSync(fd)
  }
}
