package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

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

// Fetching a payload announced by CID. The announcer holds its own
// payload and is connected (its contribution just arrived over gossip), so
// the fetch needs a round trip and the bytes: payloadFetchBase covers the
// round trip and bitswap's want/have exchange, payloadFetchRate is the
// slowest link a swarm is expected to run on. A peer that cannot serve its
// own payload at that pace is "unavailable" (no score lost), and the round
// does not wait its whole deadline for a CID nobody serves.
const (
	payloadFetchBase = 5 * time.Second
	payloadFetchRate = 1 << 20 // bytes per second
)

// payloadFetchTimeout is how long to wait for a payload of payloadBytes
// (as announced; clamped to maxBytes, what any encoding of the model can
// take) within a round of deadline.
func payloadFetchTimeout(deadline time.Duration, payloadBytes int64, maxBytes int) time.Duration {
	n := min(max(payloadBytes, 0), int64(maxBytes))
	return min(deadline, payloadFetchBase+time.Duration(n)*time.Second/payloadFetchRate)
}

// holders are the peers known to hold a payload: its author, named by the
// peer ID string a contribution carries (none if it does not parse).
func holders(author string) []peer.ID {
	p, err := peer.Decode(author)
	if err != nil {
		return nil
	}
	return []peer.ID{p}
}

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
	// usage counts what seen and faults hold, by round: tier 0's memory
	// bounds (maxRoundPeers and the rest) are checked against it.
	usage map[int64]*roundUsage
	// onEquivocation, if set, is told of equivocations seen (a contributor
	// reports them to the coordinator): once per round and peer, one at a
	// time on one worker, with at most maxPendingReports waiting (reports).
	// Called without mu held.
	onEquivocation func(first, second []byte)
	reported       map[roundPeer]bool
	reports        reportQueue
	// score, if set, counts the proven faults tier 0 records, by peer: a
	// contributor's own application score for gossipsub.
	score *faultScore
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

// Tier 0's memory bounds. Every contribution tier 0 passes is kept whole
// (an equivocation is proven by the first version's signed bytes), so what
// a flood of throwaway identities can make every node hold is bounded here.
const (
	// maxRoundPeers and maxRoundBytes bound the open round: ten times a
	// swarm of a few hundred peers (what the connection manager is sized
	// for), each with a 64 KiB inline payload (compression.inline_max_bytes).
	maxRoundPeers = 4096
	maxRoundBytes = 256 << 20
	// maxNextRoundPeers and maxNextRoundBytes bound the next round, whose
	// base and shard seed tier 0 cannot check yet. Only peers faster than
	// the record's propagation send there, and they re-announce every
	// republishInterval, so one turned away waits seconds, not a round.
	maxNextRoundPeers = 512
	maxNextRoundBytes = 32 << 20
	// maxFaultBytes bounds the evidence blocks kept per round: each
	// proven fault holds one or two contributions until the round seals.
	maxFaultBytes = 64 << 20
	// maxPendingReports bounds equivocation reports waiting to be sent: a
	// report is worth sending once, and the coordinator hears most
	// equivocations itself; past the bound new ones are dropped.
	maxPendingReports = 16
)

// roundUsage is what tier 0 holds of one round.
type roundUsage struct {
	peers, bytes int // seen contributions
	faultBytes   int // evidence blocks
}

func newRoundGate(swarm string, elems int) *roundGate {
	return &roundGate{swarm: swarm, elems: elems, seen: map[roundPeer]seenContribution{}, faults: map[int64][]gateFault{},
		usage: map[int64]*roundUsage{}, reported: map[roundPeer]bool{}}
}

func (g *roundGate) usageOf(round int64) *roundUsage {
	u := g.usage[round]
	if u == nil {
		u = &roundUsage{}
		g.usage[round] = u
	}
	return u
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
	for r := range g.usage {
		if r < round {
			delete(g.usage, r)
		}
	}
	for k := range g.reported {
		if k.round < round {
			delete(g.reported, k)
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

// addFault records a proven fault found outside validation (a reported
// equivocation).
func (g *roundGate) addFault(round int64, f gateFault) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fault(round, f)
}

// fault records a proven fault, the first per peer and round, and reports
// whether it did. Only faults of the open round and the next are kept
// (EvidenceRoundAccepted): a fault of a past round would never be sealed,
// and one of a far-future round would never be pruned. The evidence blocks
// of a round are bounded by maxFaultBytes. Call with mu held.
func (g *roundGate) fault(round int64, f gateFault) bool {
	if !EvidenceRoundAccepted(g.round.Load(), round) {
		return false
	}
	for _, have := range g.faults[round] {
		if have.peer == f.peer {
			return false
		}
	}
	n := 0
	for _, b := range f.blocks {
		n += len(b)
	}
	u := g.usageOf(round)
	if u.faultBytes+n > maxFaultBytes {
		return false
	}
	u.faultBytes += n
	g.faults[round] = append(g.faults[round], f)
	if g.score != nil {
		g.score.add(f.peer)
	}
	return true
}

// validate is the contributions topic's validator (tier 0). It rejects only
// what is provably invalid — undecodable, badly signed, signed by someone
// other than the gossip author, another swarm, a payload over any encoding's
// size or not matching its CID, a shard seed not the round's, equivocation —
// and ignores what may be honest lateness (an old round, another base).
// Contributions for the next round pass too: a fast contributor may finish
// its next round's work before a slower peer has applied the record that
// opened it. Faults signed by their author are kept as evidence. What it
// keeps is bounded per round (maxRoundPeers and the rest); past the bounds
// it ignores.
//
// A rejection costs the neighbour that delivered the message its gossipsub
// score (p2p.TopicScoreParams), so a fault that depends on this node's view
// of the round (a shard seed, a second version) is rejected only when the
// author itself delivered it: an honest relay may have passed it on in
// good faith, a moment earlier or later in the round.
func (g *roundGate) validate(ctx context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if ctx.Err() != nil { // queued past the validator timeout
		return pubsub.ValidationIgnore
	}
	seq := g.seq.Add(1)
	c, signer, body, err := record.OpenSigned[record.Contribution](m.Data)
	if err != nil {
		return pubsub.ValidationReject
	}
	author, err := peer.IDFromBytes(m.From)
	if err != nil || author != signer || c.Peer != signer.String() || c.Swarm != g.swarm {
		return pubsub.ValidationReject
	}
	if !wellFormedVerdict(c) {
		return pubsub.ValidationReject // a pure function of the message: every honest node rejects it too
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
	reject := func() pubsub.ValidationResult {
		if from != author {
			return pubsub.ValidationIgnore
		}
		return pubsub.ValidationReject
	}
	proven := func(reason string) {
		g.mu.Lock()
		g.fault(c.Round, gateFault{peer: c.Peer, reason: reason, blocks: [][]byte{m.Data}})
		g.mu.Unlock()
	}
	if c.Inline != nil {
		if max := verify.MaxPayloadBytes(g.elems); len(*c.Inline) > max {
			proven(fmt.Sprintf("%s: %d-byte payload, no encoding of %d parameters exceeds %d", verify.ReasonOversized, len(*c.Inline), g.elems, max))
			return pubsub.ValidationReject
		}
		if pc, err := payloadCID(*c.Inline); err != nil || !pc.Equals(c.Payload) {
			proven(fmt.Sprintf("%s: inline payload hashes to %s, not %s", verify.ReasonPayloadCID, pc, c.Payload))
			return pubsub.ValidationReject
		}
	}
	if c.Round == cur {
		if reason := verify.ShardReason(c.Seed, op.seed); reason != "" {
			proven(reason)
			return reject()
		}
	}
	digest := sha256.Sum256(body)
	g.mu.Lock()
	defer g.mu.Unlock()
	key := roundPeer{c.Round, c.Peer}
	if prev, ok := g.seen[key]; ok {
		if prev.body == digest {
			// The same contribution again (a re-announcement): handed on
			// decoded like the first, or every subscriber opens it again
			// (7 % of a 32-peer swarm's CPU; benchmarks/scale).
			m.ValidatorData = &checked{rec: c, blk: blk}
			return pubsub.ValidationAccept
		}
		g.fault(c.Round, equivocationFault(c, prev.raw, m.Data))
		if g.onEquivocation != nil && !g.reported[key] && g.reports.add(g.onEquivocation, prev.raw, m.Data) {
			g.reported[key] = true
		}
		// An honest peer may have forwarded the other version before
		// seeing this one: reject only the author's own delivery.
		return reject()
	}
	maxPeers, maxBytes := maxRoundPeers, maxRoundBytes
	if c.Round != cur {
		maxPeers, maxBytes = maxNextRoundPeers, maxNextRoundBytes
	}
	u := g.usageOf(c.Round)
	if u.peers+1 > maxPeers || u.bytes+len(m.Data) > maxBytes {
		return pubsub.ValidationIgnore
	}
	u.peers++
	u.bytes += len(m.Data)
	g.seen[key] = seenContribution{body: digest, raw: m.Data, seq: seq}
	m.ValidatorData = &checked{rec: c, blk: blk}
	return pubsub.ValidationAccept
}

// wellFormedVerdict checks the peer-audit verdict a contribution may carry
// (round.PeerAudit) without any view of the swarm: it judges the previous
// round, another peer's contribution, and its distances are numbers a
// replay can give (finite, not negative). Whether it judges the assigned
// contribution is the round engine's to settle.
func wellFormedVerdict(c *record.Contribution) bool {
	v := c.PeerAudit
	if v == nil {
		return true
	}
	ok := func(d *float64) bool { return d == nil || (*d >= 0 && *d <= math.MaxFloat64) }
	return v.Round == c.Round-1 && v.Peer != c.Peer && v.Peer != "" && v.Contribution.Defined() && ok(v.PayloadDistance) && ok(v.EndDistance)
}

// reportQueue runs reports one at a time on one goroutine, which exists
// only while reports wait, with at most maxPendingReports waiting.
type reportQueue struct {
	mu      sync.Mutex
	pending []func()
	running bool
}

// add queues send(first, second); false if the queue is full.
func (q *reportQueue) add(send func(first, second []byte), first, second []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) >= maxPendingReports {
		return false
	}
	q.pending = append(q.pending, func() { send(first, second) })
	if !q.running {
		q.running = true
		go q.drain()
	}
	return true
}

func (q *reportQueue) drain() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		next := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()
		next()
	}
}

// faultScore counts the proven faults this node's tier 0 recorded, by
// peer: the application score a contributor gives gossipsub (a coordinator
// uses its ledger's scores). Only proven faults count, as on the
// coordinator, so a slow or unlucky honest peer stays at 0.
type faultScore struct {
	mu     sync.Mutex
	faults map[string]int
}

// maxScoredPeers bounds faultScore: each faulty throwaway identity costs
// an entry. Past it, new offenders go unscored here (the coordinator's
// ledger still scores them).
const maxScoredPeers = 1 << 16

func newFaultScore() *faultScore { return &faultScore{faults: map[string]int{}} }

func (s *faultScore) add(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.faults[p]; ok || len(s.faults) < maxScoredPeers {
		s.faults[p]++
	}
}

// appScore is gossipsub's application-specific score of p: faultPenalty
// per proven fault, as the coordinator's (Coordinator.appScore).
func (s *faultScore) appScore(p peer.ID) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) == 0 {
		// The usual case, and gossipsub asks often: skip encoding the ID
		// (5 % of a 32-peer swarm's CPU went to base58 here).
		return 0
	}
	return -faultPenalty * float64(s.faults[p.String()])
}

// roundsValidator is the rounds topic's validator, for the coordinator
// and contributors alike: a message passes only if it is a round record of
// swarm signed by coordinator and published by it (m.From; relays keep the
// author) — anyone else publishing a record, even a genuine one, is
// replaying it. latest, if not nil, is the last round this node applied:
// a record at or before it is ignored (a replay of the coordinator's own
// message after gossipsub's seen-cache forgot it). The coordinator passes
// nil: it validates its own records as it publishes them.
func roundsValidator(swarm string, coordinator peer.ID, latest func() int64) pubsub.ValidatorEx {
	return func(ctx context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if ctx.Err() != nil {
			return pubsub.ValidationIgnore
		}
		author, err := peer.IDFromBytes(m.From)
		if err != nil || author != coordinator {
			return pubsub.ValidationReject
		}
		rec, signer, err := record.Open[record.RoundRecord](m.Data)
		if err != nil || signer != coordinator || rec.Swarm != swarm {
			return pubsub.ValidationReject
		}
		if latest != nil && rec.Round <= latest() {
			return pubsub.ValidationIgnore
		}
		m.ValidatorData = rec // the subscriber takes it as checked, without opening it again
		return pubsub.ValidationAccept
	}
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
