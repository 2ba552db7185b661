package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// TestAppScoreCountsOnlyProvenFaults: what verification feeds gossipsub.
// One proven fault puts a peer below the gossip threshold, three below the
// graylist threshold, where its messages are no longer read; a slow or
// unlucky honest peer — stale, unavailable, failing tier 2, or absent from
// the records — stays at 0 and never loses the mesh.
func TestAppScoreCountsOnlyProvenFaults(t *testing.T) {
	id := func() peer.ID {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		p, _ := peer.IDFromPrivateKey(k)
		return p
	}
	cheat, slow, absent := id(), id(), id()
	c := &Coordinator{scores: map[string]record.PeerScore{}, faults: map[peer.ID]int64{}}
	sp := verify.DefaultScoreParams()
	apply := func(p peer.ID, round int64, reason string) {
		ps := c.scores[p.String()]
		ps.Peer = p.String()
		defer func() { c.setScore(ps) }()
		e := record.Entry{Peer: p.String(), Verdict: "rejected", Reason: reason}
		if reason == "" {
			e.Verdict = "accepted"
		}
		sp.Apply(&ps, round, e)
	}
	apply(cheat, 0, "equivocation: two")
	_, th := p2p.ScoreParams(c.appScore)
	if got := c.appScore(cheat); got >= th.GossipThreshold {
		t.Errorf("one proven fault scores %v, not below the gossip threshold %v", got, th.GossipThreshold)
	}
	for r, reason := range []string{"", "norm: big", "duplicate: of x"} {
		apply(cheat, int64(r+1), reason)
	}
	for r, reason := range []string{"stale: old base", "unavailable: gone", "tier2: unlucky", ""} {
		apply(slow, int64(r), reason)
	}
	if got := c.appScore(cheat); got >= th.GraylistThreshold {
		t.Errorf("three proven faults score %v, not below the graylist threshold %v", got, th.GraylistThreshold)
	}
	if got := c.appScore(slow); got != 0 {
		t.Errorf("an honest slow peer scores %v in gossipsub", got)
	}
	if got := c.appScore(absent); got != 0 {
		t.Errorf("a peer with no record scores %v", got)
	}
}
