package storage

import (
	"context"
	"fmt"
	"slices"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

// GetFrom returns the block c (a contribution's payload), fetching it over
// /swarmtrain/blocks/1 from the holders the caller knows (its author; the
// coordinator, which fetched every payload it judged), in the caller's
// order, each directly connected and speaking the protocol: the next is
// asked too once the one before has failed or has run hedgeDelay, and the
// first copy that hashes to c wins, the other fetches cancelled. A payload
// whose author sits on a slow link thus comes from a fast holder.
// Peers not known to hold c are not asked: every node serves at most
// transfer.MaxServing streams, and speculative asks from every fetcher
// would take the slots the real holders' fetches need. Copies over
// maxBytes are refused before their bytes are read. When no direct fetch
// succeeds (no holder speaks the protocol, or only relayed connections),
// bitswap fetches it, finding providers itself. The block is stored.
func (e *Exchange) GetFrom(ctx context.Context, c cid.Cid, holders []peer.ID, maxBytes int64) (blocks.Block, error) {
	if b, err := e.store.Blockstore().Get(ctx, c); err == nil {
		return b, nil
	}
	if peers := e.candidates(holders); len(peers) > 0 {
		if b := e.race(ctx, c, peers, maxBytes); b != nil {
			if err := e.bserv.AddBlock(ctx, b); err != nil {
				return nil, fmt.Errorf("storage: storing block %s: %w", c, err)
			}
			return b, nil
		}
	}
	b, err := e.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	if n := len(b.RawData()); int64(n) > maxBytes {
		// bitswap stored it on arrival (hash-checked, under its own 2 MiB
		// cap); what this caller refuses is not kept.
		_ = e.store.Blockstore().DeleteBlock(ctx, c)
		return nil, fmt.Errorf("storage: block %s is %d bytes, over the limit of %d", c, n, maxBytes)
	}
	return b, nil
}

// candidates are the holders to ask: directly connected (a relayed
// connection carries no payload) and speaking the protocol, each once.
func (e *Exchange) candidates(holders []peer.ID) []peer.ID {
	if e.noTransfer {
		return nil
	}
	var out []peer.ID
	for _, p := range holders {
		if p == e.h.ID() || slices.Contains(out, p) || e.h.Network().Connectedness(p) != network.Connected {
			continue
		}
		if s, err := e.h.Peerstore().SupportsProtocols(p, transfer.ID); err == nil && len(s) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// hedgeDelay is how long a fetch from one holder runs alone before the
// next holder is asked too (a hedged request): longer than a healthy
// holder takes for a payload on a WAN link (a round trip plus 64 KiB to
// 1 MiB at 20 Mbit/s: 0.2-0.6 s), so the usual fetch moves one copy, while
// a holder on a slow link costs the fetch at most this much. A holder that
// fails (lacks it, refuses the stream, sends bytes that do not check) hands
// over at once. Measured: benchmarks/holders, and benchmarks/scale, where
// asking every holder at once slowed replays (every copy moved twice).
const hedgeDelay = time.Second

// race fetches c from peers in order, each starting when the one before
// has failed or has run hedgeDelay, and returns the first complete,
// hash-checked copy (transfer.Fetch checks it), or nil if none came.
func (e *Exchange) race(ctx context.Context, c cid.Cid, peers []peer.ID, maxBytes int64) blocks.Block {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan blocks.Block, len(peers))
	next, running := 0, 0
	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	start := func() {
		if next == len(peers) {
			return
		}
		p := peers[next]
		next++
		running++
		hedge.Reset(hedgeDelay)
		go func() {
			f, err := transfer.Fetch(ctx, e.h, p, c, maxBytes)
			if err != nil || len(f.Blocks) != 1 || !f.Blocks[0].Cid().Equals(c) {
				got <- nil // a payload is one raw block; a DAG is not one
				return
			}
			got <- f.Blocks[0]
		}()
	}
	start()
	for running > 0 {
		select {
		case b := <-got:
			running--
			if b != nil {
				e.directFetches.Add(1)
				return b
			}
			start()
		case <-hedge.C:
			start()
		}
	}
	return nil
}
