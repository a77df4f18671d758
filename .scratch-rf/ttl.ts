import { startProvider, mintTokens, decodeJwtPayload } from '../test/support/provider.js'
const p = await startProvider({ ttl: { authorizationCode: -120 } })
try {
  const t = await mintTokens(p)
  const c = decodeJwtPayload(t.accessToken)
  console.log('exp-iat', (c.exp as number) - (c.iat as number), 'exp-now', (c.exp as number) - Date.now()/1000)
} catch (e) { console.log('err', (e as Error).message) }
await p.stop()
