// flock(2) moved to src/os/flock.ts: the client needs it too (the `exec` listener asks whether a
// daemon owns the home, docs/broker.md#the-listener). The store keeps importing it from here.
export * from '../os/flock.js'
