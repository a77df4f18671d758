// getAuth never answers an expired token, or one below minValiditySeconds, whatever the
// credential store (docs/contract.md, getAuth): with `cli_auth_credentials_store` other than
// "file" the daemon cannot write a refresh back, so it does not refresh, and then such a token is
// -32002 naming the store, never served. The real daemon bundle and the harness's provider.
// No token is ever printed: comparisons use t.ok(a === b).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, makeHome } from './support/daemon.js'
import { decodeJwtPayload, mintTokens } from './support/provider.js'
import { authFileFor, daemon, provider, refreshCalls, shape, writeAuthFile } from './support/refresh.js'
import { until } from './support/until.js'


const STORES = ['file', 'keyring', 'auto', 'ephemeral'] as const

t.test('every store with an expired access token: the expired token is never served', async (t) => {
  // One provider, access tokens of 1 s: mint one login per store, then wait once for all to expire.
  const w = await provider(t, { ttl: { authorizationCode: 1, refreshToken: 3600 } })
  const p = w.provider
  const logins = await Promise.all(STORES.map(async (store) => ({ store, minted: await mintTokens(p) })))
  const lastExp = Math.max(...logins.map((l) => decodeJwtPayload(l.minted.accessToken).exp as number))
  await until('the minted access tokens to expire', () => Date.now() > lastExp * 1000 + 50, 5000)
  p.setTtl({ authorizationCode: 3600 })

  for (const { store, minted } of logins) {
    t.test(store, async (t) => {
      const home = await makeHome()
      fs.writeFileSync(path.join(home, 'config.toml'), `cli_auth_credentials_store = "${store}"\n`)
      writeAuthFile(home, authFileFor(minted))
      const before = refreshCalls(p)
      const d = await daemon(t, home, p)
      const c = await connect(t, d)
      for (const params of [{}, { minValiditySeconds: 0 }]) {
        const res = await c.call('getAuth', params)
        t.notOk(res.result?.token === minted.accessToken, `the expired token is not served (${JSON.stringify(params)}): ${shape(res)}`)
        if (store === 'file') {
          t.ok(typeof res.result?.token === 'string', 'the file store is refreshed and served')
          continue
        }
        t.equal(res.error?.code, -32002, shape(res))
        t.equal(res.error?.data?.reason, 'refresh_failed')
        t.equal(res.error?.data?.kind, 'rejected')
        t.match(res.error?.message, `the access token has expired, and the configured credential store (${store}) is not one this daemon can refresh`)
      }
      if (store !== 'file') t.equal(refreshCalls(p) - before, 0, 'no refresh call for a store the daemon cannot write')
    })
  }
})

t.test('a token valid for less than minValiditySeconds in a store the daemon cannot refresh: -32002 saying how long it has', async (t) => {
  const w = await provider(t, { ttl: { authorizationCode: 1800, refreshToken: 3600 } })
  const minted = await mintTokens(w.provider)
  const home = await makeHome()
  fs.writeFileSync(path.join(home, 'config.toml'), 'cli_auth_credentials_store = "keyring"\n')
  writeAuthFile(home, authFileFor(minted))
  const d = await daemon(t, home, w.provider)
  const c = await connect(t, d)
  const ok = await c.call('getAuth', { minValiditySeconds: 600 })
  t.ok(ok.result?.token === minted.accessToken, `valid for 30 min, 10 min asked: served (${shape(ok)})`)
  const res = await c.call('getAuth', { minValiditySeconds: 2400 })
  t.equal(res.error?.code, -32002, shape(res))
  t.match(res.error?.message, /the access token expires in \d+ s, sooner than the 2400 s asked for, and the configured credential store \(keyring\)/)
})
