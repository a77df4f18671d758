// The browser login once in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core) opens the authorize URL, goes through the provider's pages (the harness
// approves by redirects) and lands on our success page; then a denied login on our error page.
// No Chromium here is a failure, not a skip: .ci/run installs it.
import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { tempDir } from './support/daemon.js'
import { authFile, setup } from './support/login-helpers.js'
import { DEFAULT_ACCOUNT } from './support/provider.js'

const CHROMIUM = '/usr/bin/chromium'
// docs/testing.md#headless-chromium: the headless flags that work here (Playwright supplies its own profile).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

function checkPng(t: Test, file: string): void {
  const png = fs.readFileSync(file)
  t.ok(png.length > 1000, 'a non-empty screenshot')
  t.ok(png.subarray(0, 8).equals(PNG_MAGIC), 'a PNG')
}

t.test('browser login in headless Chromium', async (t) => {
  t.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install chromium)`)
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 })
  t.teardown(() => browser.close())
  const { provider, daemon, rpc } = await setup(t)
  const shots = process.env.LOGIN_SHOTS_DIR ?? tempDir('cad-shots-')

  t.test('success page', async (t) => {
    const page = await browser.newPage()
    const started = await rpc.ok('login', { method: 'browser' })
    await page.goto(started.authUrl)
    await page.waitForURL(new URL('/success', started.callbackUrl).href, { timeout: 20_000 })
    t.equal(await page.title(), 'Signed in to Codex')
    const text = await page.innerText('body')
    t.match(text, DEFAULT_ACCOUNT.email, 'who is logged in')
    t.match(text, /plus plan/, 'the plan')
    t.match(text, /You can close this window/)
    const file = path.join(shots, 'success.png')
    await page.screenshot({ path: file, fullPage: true })
    checkPng(t, file)
    t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'succeeded' })
    t.ok(fs.existsSync(authFile(daemon.home)))
    await page.close()
  })

  t.test('error page for a denied login', async (t) => {
    const page = await browser.newPage()
    const started = await rpc.ok('login', { method: 'browser' })
    provider.denyNext()
    const response = page.waitForResponse((r) => r.url().startsWith(started.callbackUrl))
    await page.goto(started.authUrl)
    t.equal((await response).status(), 400)
    await page.waitForLoadState('load')
    t.equal(await page.title(), 'Sign-in failed')
    const text = await page.innerText('body')
    t.match(text, /Sign-in was denied \(access_denied\)/)
    t.match(text, /You can close this window/)
    const file = path.join(shots, 'error.png')
    await page.screenshot({ path: file, fullPage: true })
    checkPng(t, file)
    t.match(await rpc.ok('awaitLogin', { loginId: started.loginId, timeoutSeconds: 10 }), { status: 'failed', error: { reason: 'login_failed' } })
    await page.close()
  })
})
