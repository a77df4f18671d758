import fs from 'node:fs'
import path from 'node:path'
import { spawnSync, spawn } from 'node:child_process'
import { tempDir, connect, fakeAuth, renameInto } from '/work/main/bench/lib.mjs'
const bin = process.argv[2]
let bad = 0
for (let i = 0; i < 12; i++) {
  const home = path.join(tempDir('lk-'), 'home'); fs.mkdirSync(home, { mode: 0o700 })
  const sock = path.join(tempDir('lk-s-'), 's.sock')
  const p = spawn(process.execPath, [bin, '--codex-home', home, '--socket', sock], { stdio: ['ignore', 'pipe', 'inherit'] })
  let log = ''; p.stdout.setEncoding('utf8').on('data', d => log += d)
  while (!fs.existsSync(sock)) await new Promise(r => setTimeout(r, 20))
  const c = await connect(sock)
  fs.rmSync(home, { recursive: true, force: true }); fs.mkdirSync(home, { recursive: true, mode: 0o700 })
  const a = fakeAuth('x'); renameInto(path.join(home, 'auth.json'), a.text)
  const dl = Date.now() + 3000
  while (Date.now() < dl && (await c.call('getAuth')).result?.token !== a.access) await new Promise(r => setTimeout(r, 10))
  const picked = (await c.call('getAuth')).result?.token === a.access
  await new Promise(r => setTimeout(r, 500))
  const existed = fs.existsSync(path.join(home, 'authd.lock'))
  const held = spawnSync('flock', ['-n', path.join(home, 'authd.lock'), 'true']).status !== 0 && fs.existsSync(path.join(home, 'authd.lock'))
  console.log(i, 'picked', picked, 'lockfile existed', existed, 'lock held in new home:', held)
  if (!held) { bad++; console.log('exists', fs.existsSync(path.join(home, 'authd.lock')), fs.readdirSync(home), log.split('\n').filter(l => !l.includes('"level":30') || l.includes('recreat')).join('\n')) }
  c.close(); p.kill('SIGTERM')
}
console.log('bad', bad)
