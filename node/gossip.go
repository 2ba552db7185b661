package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Topic kinds of a swarm.
const (
	topicContributions = "contributions"
	topicRounds        = "rounds"
)

// payloadCID is the CID of an encoded update: a raw block.
func payloadCID(b []byte) (cid.Cid, error) { return verify.PayloadCID(b) }

// roundGate is tier 0: what every node checks a contribution against on
// every gossip hop — the swarm, the round now open with its base model and
// shard seed, the model's size, and the contributions already seen this
// round (for equivocation).
type roundGate struct {
	swarm   string
	elems   int // the model's parameter count: bounds a payload's size
	round   atomic.Int64
	current atomic.Pointer[openRound]

	mu   sync.Mutex
	seen map[roundPeer]seenContribution // first contribution of each peer, for the open and next rounds
	// faults holds, by round, the attributable tier-0 faults proven by
	// signed blocks: the coordinator writes them into the round's record.
	faults map[int64][]gateFault
	// onEquivocation, if set, is told of each equivocation seen (a
	// contributor reports them to the coordinator). Called without mu held.
	onEquivocation func(first, second []byte)
	// seq numbers messages as validation starts. Gossipsub validates on
	// several workers and may deliver two messages that arrived a
	// millisecond apart in either order; a copy is made after the original
	// arrived, so ordering by this number keeps the copy the later one.
	seq atomic.Uint64
}

type openRound struct {
	base cid.Cid
	seed int64
}

type roundPeer struct {
	round int64
	peer  string
}

type seenContribution struct {
	body [sha256.Size]byte // digest of the signed body: what tells versions apart
	raw  []byte
	seq  uint64 // when tier 0 first saw it: the coordinator's record order
}

// gateFault is a proven tier-0 fault of one peer in one round.
type gateFault struct {
	peer     string
	reason   string
	evidence string
	blocks   [][]byte // the signed contribution blocks that prove it
}

func newRoundGate(swarm string, elems int) *roundGate {
	return &roundGate{swarm: swarm, elems: elems, seen: map[roundPeer]seenContribution{}, faults: map[int64][]gateFault{}}
}

// open makes round current, built on base with shards drawn with seed, and
// forgets what it saw of earlier rounds.
func (g *roundGate) open(round int64, base cid.Cid, seed int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.current.Store(&openRound{base: base, seed: seed})
	g.round.Store(round)
	for k := range g.seen {
		if k.round < round {
			delete(g.seen, k)
		}
	}
	for r := range g.faults {
		if r < round {
			delete(g.faults, r)
		}
	}
}

// arrival is when tier 0 first saw peer's contribution to round (its
// sequence number); contributions it has no record of sort last.
func (g *roundGate) arrival(round int64, peer string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.seen[roundPeer{round, peer}]; ok {
		return s.seq
	}
	return math.MaxUint64
}

// takeFaults returns and forgets round's faults, one per peer.
func (g *roundGate) takeFaults(round int64) []gateFault {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.faults[round]
	delete(g.faults, round)
	return f
}

// fault records a proven fault, the first per peer and round.
func (g *roundGate) fault(round int64, f gateFault) {
	for _, have := range g.faults[round] {
		if have.peer == f.peer {
			return
		}
	}
	g.faults[round] = append(g.faults[round], f)
}

// validate is the contributions topic's validator (tier 0). It rejects only
// what is provably invalid — undecodable, badly signed, signed by someone
// other than the gossip author, another swarm, a payload over any encoding's
// size or not matching its CID, a shard seed not the round's, equivocation —
// and ignores what may be honest lateness (an old round, another base).
// Contributions for the next round pass too: a fast contributor may finish
// its next round's work before a slower peer has applied the record that
// opened it. Faults signed by their author are kept as evidence.
func (g *roundGate) validate(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	seq := g.seq.Add(1)
	c, signer, body, err := record.OpenSigned[record.Contribution](m.Data)
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
	op := g.current.Load()
	if c.Round == cur && (op == nil || !c.Base.Equals(op.base)) {
		return pubsub.ValidationIgnore
	}
	blk, err := recordBlock(m.Data)
	if err != nil {
		return pubsub.ValidationReject
	}
	proven := func(reason string) pubsub.ValidationResult {
		g.mu.Lock()
		g.fault(c.Round, gateFault{peer: c.Peer, reason: reason, blocks: [][]byte{m.Data}})
		g.mu.Unlock()
		return pubsub.ValidationReject
	}
	if c.Inline != nil {
		if max := verify.MaxPayloadBytes(g.elems); len(*c.Inline) > max {
			return proven(fmt.Sprintf("%s: %d-byte payload, no encoding of %d parameters exceeds %d", verify.ReasonOversized, len(*c.Inline), g.elems, max))
		}
		if pc, err := payloadCID(*c.Inline); err != nil || !pc.Equals(c.Payload) {
			return proven(fmt.Sprintf("%s: inline payload hashes to %s, not %s", verify.ReasonPayloadCID, pc, c.Payload))
		}
	}
	if c.Round == cur {
		if reason := verify.ShardReason(c.Seed, op.seed); reason != "" {
			return proven(reason)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	key := roundPeer{c.Round, c.Peer}
	if prev, ok := g.seen[key]; ok {
		if prev.body == sha256.Sum256(body) {
			return pubsub.ValidationAccept // the same contribution again (a re-announcement)
		}
		g.fault(c.Round, equivocationFault(c, prev.raw, m.Data))
		if g.onEquivocation != nil {
			go g.onEquivocation(prev.raw, m.Data)
		}
		if from != author {
			// An honest peer may have forwarded the other version before
			// seeing this one: drop without blaming it.
			return pubsub.ValidationIgnore
		}
		return pubsub.ValidationReject
	}
	g.seen[key] = seenContribution{body: sha256.Sum256(body), raw: m.Data, seq: seq}
	m.ValidatorData = &checked{rec: c, blk: blk}
	return pubsub.ValidationAccept
}

// checked is what tier 0 decoded, signature-checked and hashed, handed to
// the topic's subscribers in Message.ValidatorData so that no node decodes
// and verifies a contribution twice.
type checked struct {
	rec *record.Contribution
	blk blocks.Block
}

// contributionOf returns what tier 0 checked of m, or decodes it when tier
// 0 handed nothing on (a contribution accepted the second time around, or a
// test adversary's own message).
func contributionOf(m *pubsub.Message) (*checked, error) {
	if c, ok := m.ValidatorData.(*checked); ok {
		return c, nil
	}
	rec, _, err := record.Open[record.Contribution](m.Data)
	if err != nil {
		return nil, err
	}
	blk, err := recordBlock(m.Data)
	if err != nil {
		return nil, err
	}
	return &checked{rec: rec, blk: blk}, nil
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
	if op := g.current.Load(); op != nil {
		return op.base
	}
	return cid.Undef
}
