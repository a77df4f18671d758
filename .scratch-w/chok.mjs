import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { watch } from 'chokidar'
let fails = 0
for (let i = 0; i < 20; i++) {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'chk-'))
  const home = path.join(parent, 'home')
  fs.mkdirSync(home)
  fs.writeFileSync(path.join(home, 'auth.json'), 'a')
  const events = []
  const w = watch(parent, { depth: 1, ignoreInitial: true, atomic: false,
    ignored: (p) => !(p === parent || p === home || (path.dirname(p) === home && ['auth.json','config.toml'].includes(path.basename(p)))) })
  w.on('all', (e, p) => events.push(`${e} ${path.relative(parent, p)}`))
  await new Promise(r => w.once('ready', r))
  fs.rmSync(home, { recursive: true, force: true })
  fs.mkdirSync(home)
  fs.writeFileSync(path.join(home, 'auth.json.tmp'), 'b'); fs.renameSync(path.join(home, 'auth.json.tmp'), path.join(home, 'auth.json'))
  await new Promise(r => setTimeout(r, 300))
  const before = events.length
  fs.writeFileSync(path.join(home, 'auth.json'), 'c')
  await new Promise(r => setTimeout(r, 300))
  const ok = events.length > before
  if (!ok) fails++
  console.log(i, ok, events.join(', '))
  await w.close()
  fs.rmSync(parent, { recursive: true, force: true })
}
console.log('fails', fails)
