// Package round is the round engine: the one implementation of what a
// round computes from public inputs — verdicts (tiers 0–2 as recorded),
// weights, the aggregate, the outer step, the next model and outer state,
// scores and the next shard seed — and of a contributor's local work.
//
// Every role calls it: the coordinator to seal (node), an observer to
// recheck a ledger (Recheck), a contributor to replay a record and to
// produce its update (Replay, Work), and benchmarks/sim to simulate a swarm.
// None of them re-implements a step of it, so they agree to the bit on the
// same build: the arithmetic is plain Go in a fixed order (gradient.Aggregate
// sorts by peer ID, the outer step runs in index order).
//
// It sits between node and verify: node → round → verify → {train,
// gradient, storage}. It does no I/O of its own except reading blocks from a
// store in Recheck; callers store and publish what it returns.
package round
