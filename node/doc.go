// Package node runs a swarmtrain peer: it wires the p2p plumbing
// (node/p2p), storage, training and gradient exchange into the roles of the
// round protocol — the coordinator a researcher starts, the contributors
// that join it — as described in docs/ARCHITECTURE.md.
package node
