import t from 'tap'
import net from 'node:net'
import { startDaemon, stopAtTeardown } from './support/daemon.js'
import { Wire, cpuMs, limitLogs, memoryOf } from './support/reliability.js'
t.test('dbg', async (t) => {
  const d = stopAtTeardown(t, await startDaemon({ env: { OPENAI_API_KEY: 'sk-fake-dbg-123456789012', NODE_OPTIONS: '--max-old-space-size=64' } }))
  const w = await Wire.connect(d.socket)
  const one = await w.call('status')
  console.error('status bytes', JSON.stringify(one).length)
  const line = JSON.stringify(Array.from({ length: 256 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'status' }))) + '\n'
  for (let i = 0; i < 40; i++) {
    const s = net.connect(d.socket); await new Promise((r) => s.once('connect', r)); s.pause(); s.on('error', () => {}); t.teardown(() => s.destroy()); s.write(line.repeat(28))
  }
  for (let k = 0; k < 8; k++) {
    await new Promise((r) => setTimeout(r, 2000))
    console.error(k, 'cpu', cpuMs(d.pid), 'rss', memoryOf(d.pid).rssMB, 'cap', limitLogs(d.logs, 'buffer_cap'), 'slow', limitLogs(d.logs, 'slow_reader'), d.logs.filter((l) => l.includes('limit')).length, d.logs.slice(-1)[0]?.slice(0, 150), d.proc.exitCode)
  }
  w.close()
})
