//go:build race

package node

// raceEnabled: the race detector slows the adversarial swarms tenfold;
// their concurrent paths are the ones the loopback test covers under it.
const raceEnabled = true
