// status.daemon.socket under socket activation names the socket systemd bound, even when the
// unit listens somewhere other than the path our own rules compute.
import t from 'tap'
import net from 'node:net'
import path from 'node:path'
import { inheritedSocketPath } from '../src/rpc/socket.js'
import { tempDir } from './support/daemon.js'

t.test('the path of a listening socket is found from its file descriptor', async (t) => {
  const sock = path.join(tempDir('cad-inh-'), 'custom.sock')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(sock, resolve))
  t.teardown(() => server.close())
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd
  t.equal(inheritedSocketPath(fd), sock)
  t.equal(inheritedSocketPath(0), null, 'not a socket: null')
})
