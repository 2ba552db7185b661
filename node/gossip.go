package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/swarmtrain/swarmtrain/storage/record"
)

// Topic kinds of a swarm.
const (
	topicContributions = "contributions"
	topicRounds        = "rounds"
)

// payloadCID is the CID of an encoded update: a raw block.
func payloadCID(b []byte) (cid.Cid, error) {
	return cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(b)
}

// roundGate is what tier 0 checks a contribution against: the swarm, the
// round now open and its base model, and the manifests already seen this
// round (for equivocation).
type roundGate struct {
	swarm string
	round atomic.Int64
	base  atomic.Pointer[cid.Cid]

	mu   sync.Mutex
	seen map[string]cid.Cid // "round/peer" -> contribution block CID, for the open and next rounds
	// equivocations keeps both blocks of each proven equivocation as evidence.
	equivocations map[string][2]cid.Cid
}

func newRoundGate(swarm string) *roundGate {
	return &roundGate{swarm: swarm, seen: map[string]cid.Cid{}, equivocations: map[string][2]cid.Cid{}}
}

func (g *roundGate) open(round int64, base cid.Cid) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.round.Store(round)
	g.base.Store(&base)
	for k := range g.seen {
		var r int64
		fmt.Sscanf(k, "%d/", &r)
		if r < round {
			delete(g.seen, k)
		}
	}
}

// validate is the contributions topic's validator (tier 0). It rejects only
// what is provably invalid — undecodable, badly signed, signed by someone
// other than the gossip author, another swarm, equivocation — and ignores
// what may be honest lateness (an old round, another base). Contributions
// for the next round pass too: a fast contributor may finish its next
// round's work before a slower peer has applied the record that opened it.
func (g *roundGate) validate(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	c, signer, err := record.Open[record.Contribution](m.Data)
	if err != nil {
		return pubsub.ValidationReject
	}
	author, err := peer.IDFromBytes(m.From)
	if err != nil || author != signer || c.Peer != signer.String() || c.Swarm != g.swarm {
		return pubsub.ValidationReject
	}
	cur := g.round.Load()
	if c.Round != cur && c.Round != cur+1 {
		return pubsub.ValidationIgnore
	}
	if b := g.base.Load(); c.Round == cur && (b == nil || !c.Base.Equals(*b)) {
		return pubsub.ValidationIgnore
	}
	if c.Inline != nil {
		pc, err := payloadCID(*c.Inline)
		if err != nil || !pc.Equals(c.Payload) {
			return pubsub.ValidationReject
		}
	}
	blk, err := recordBlock(m.Data)
	if err != nil {
		return pubsub.ValidationReject
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	key := fmt.Sprintf("%d/%s", c.Round, c.Peer)
	if prev, ok := g.seen[key]; ok && !prev.Equals(blk.Cid()) {
		g.equivocations[key] = [2]cid.Cid{prev, blk.Cid()}
		return pubsub.ValidationReject
	}
	g.seen[key] = blk.Cid()
	return pubsub.ValidationAccept
}

// recordBlock rebuilds the block of a record received as bytes.
func recordBlock(raw []byte) (blocks.Block, error) {
	c, err := record.CIDBuilder().Sum(raw)
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(raw, c)
}

func (g *roundGate) currentBase() cid.Cid {
	if b := g.base.Load(); b != nil {
		return *b
	}
	return cid.Undef
}
