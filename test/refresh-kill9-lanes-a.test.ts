// kill -9 of the daemon at random points around a refresh, the first 100 of 200 iterations (the
// scenario and its checks: test/support/kill9.ts). Two files so that the suite's jobs share them.
import { kill9DuringRefresh } from './support/kill9.js'

kill9DuringRefresh()
