package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// heldBytes is what tier 0 keeps of round's contributions and faults.
func heldBytes(g *roundGate, round int64) (peers, bytes int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, s := range g.seen {
		if k.round == round {
			peers++
			bytes += len(s.raw)
		}
	}
	for _, f := range g.faults[round] {
		for _, b := range f.blocks {
			bytes += len(b)
		}
	}
	return peers, bytes
}

// TestFarFutureEvidenceIsNotKept: a peer equivocates with itself for round
// 10⁹ and reports it. The coordinator's evidence callback keeps evidence
// for any round at or after the current one, and faults are pruned only
// once their round is past, so each such report would pin its two blocks
// forever. Only the open round and the next are kept.
func TestFarFutureEvidenceIsNotKept(t *testing.T) {
	base := fakeModelCID()
	g := newRoundGate(testSwarm, 1<<16)
	g.open(5, base, 1)
	attacker := newTestPeer(t)
	for _, round := range []int64{1e9, 1e9 + 1, 7, 4} {
		a := attacker.contribution(t, round, base, 1, []byte("one"))
		b := attacker.contribution(t, round, base, 1, []byte("two"))
		rec, err := checkEquivocation(testSwarm, a, b)
		if err != nil {
			t.Fatal(err)
		}
		// The coordinator's evidence callback, as it stands.
		if rec.Round >= g.round.Load() {
			g.mu.Lock()
			g.fault(rec.Round, equivocationFault(rec, a, b))
			g.mu.Unlock()
		}
	}
	g.mu.Lock()
	for r := range g.faults {
		if !EvidenceRoundAccepted(5, r) {
			t.Errorf("evidence for round %d kept while round 5 is open", r)
		}
	}
	g.mu.Unlock()
	for cur, ok := range map[[2]int64]bool{{5, 5}: true, {5, 6}: true, {5, 7}: false, {5, 4}: false, {5, 1e9}: false} {
		if EvidenceRoundAccepted(cur[0], cur[1]) != ok {
			t.Errorf("EvidenceRoundAccepted(%d, %d) = %v", cur[0], cur[1], !ok)
		}
	}
}

// TestNextRoundFloodIsBounded: tier 0 cannot check a next-round
// contribution's base or seed, so throwaway identities can each park one
// there. What it keeps of the next round is bounded in peers and bytes; the
// rest is ignored (honest fast peers re-announce once the round opens), and
// everything is pruned when its round is past.
func TestNextRoundFloodIsBounded(t *testing.T) {
	base := fakeModelCID()
	g := newRoundGate(testSwarm, 1<<16)
	g.open(0, base, 1)
	payload := make([]byte, 60<<10)
	const flood = 600
	accepted := 0
	for i := range flood {
		p := newTestPeer(t)
		payload[0], payload[1] = byte(i), byte(i>>8)
		raw := p.contribution(t, 1, base, 99, payload)
		if g.validate(context.Background(), p.id, gossipMessage(raw, p.id)) == pubsub.ValidationAccept {
			accepted++
		}
	}
	peers, held := heldBytes(g, 1)
	t.Logf("%d next-round contributions of %d KiB: %d accepted, %d peers and %.1f MiB held", flood, len(payload)>>10, accepted, peers, float64(held)/(1<<20))
	if held > maxNextRoundBytes || peers > maxNextRoundPeers {
		t.Errorf("next round holds %d peers, %d bytes; bounds %d, %d", peers, held, maxNextRoundPeers, maxNextRoundBytes)
	}
	// Round 1 opens: an honest peer is still let in.
	g.open(1, base, 99)
	honest := newTestPeer(t)
	if r := g.validate(context.Background(), honest.id, gossipMessage(honest.contribution(t, 1, base, 99, []byte("late honest")), honest.id)); r != pubsub.ValidationAccept {
		t.Errorf("honest contribution after the flood: %v", r)
	}
	g.open(2, base, 7)
	if peers, held := heldBytes(g, 1); peers != 0 || held != 0 {
		t.Errorf("round 1 still holds %d peers, %d bytes after round 2 opened", peers, held)
	}
}

// TestEquivocationReportedOncePerPeer: an equivocator's second version
// reaches a contributor from many neighbours, and many equivocators act at
// once. Reports go out once per (round, peer), on one worker, with a
// bounded queue — not a goroutine and a stream per message.
func TestEquivocationReportedOncePerPeer(t *testing.T) {
	base := fakeModelCID()
	g := newRoundGate(testSwarm, 1<<16)
	g.open(0, base, 1)
	var calls, running, maxRunning atomic.Int64
	release := make(chan struct{})
	var mu sync.Mutex
	reported := map[string]int{}
	g.onEquivocation = func(first, second []byte) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		calls.Add(1)
		rec, _, _ := record.Open[record.Contribution](first)
		mu.Lock()
		reported[rec.Peer]++
		mu.Unlock()
		<-release
	}
	relay := func() peer.ID { return newTestPeer(t).id }
	eq := newTestPeer(t)
	g.validate(context.Background(), eq.id, gossipMessage(eq.contribution(t, 0, base, 1, []byte("v0")), eq.id))
	for i := range 20 {
		v := eq.contribution(t, 0, base, 1, []byte(fmt.Sprintf("v%d", i+1)))
		g.validate(context.Background(), relay(), gossipMessage(v, eq.id))
	}
	const many = 100
	for i := range many {
		p := newTestPeer(t)
		g.validate(context.Background(), p.id, gossipMessage(p.contribution(t, 0, base, 1, []byte("a")), p.id))
		g.validate(context.Background(), relay(), gossipMessage(p.contribution(t, 0, base, 1, []byte(fmt.Sprint("b", i))), p.id))
	}
	time.Sleep(100 * time.Millisecond)
	if r := maxRunning.Load(); r > 1 {
		t.Errorf("%d reports ran at once", r)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := reported[eq.id.String()]; n != 1 {
		t.Errorf("the equivocator seen from 20 neighbours was reported %d times", n)
	}
	t.Logf("%d equivocators: %d reports sent, at most %d at once", many+1, calls.Load(), maxRunning.Load())
	if c := calls.Load(); c > 1+maxPendingReports {
		t.Errorf("%d reports for %d equivocators while the worker was blocked; queue bound %d", c, many+1, maxPendingReports)
	}
}

// TestRoundsValidator: the rounds topic takes only the coordinator's own
// records of this swarm, as published by the coordinator: anyone else
// publishing one — a forgery or a replay of a genuine record — is
// rejected, and a replay of an already applied round is ignored.
func TestRoundsValidator(t *testing.T) {
	coord, other := newTestPeer(t), newTestPeer(t)
	sign := func(by testPeer, swarm string, round int64) []byte {
		blk, err := record.Sign(by.key, &record.RoundRecord{Swarm: swarm, Round: round, Base: fakeModelCID(), Model: fakeModelCID()})
		if err != nil {
			t.Fatal(err)
		}
		return blk.RawData()
	}
	latest := int64(3)
	v := roundsValidator(testSwarm, coord.id, func() int64 { return latest })
	ctx := context.Background()
	for name, tc := range map[string]struct {
		data   []byte
		author peer.ID
		want   pubsub.ValidationResult
	}{
		"next record":         {sign(coord, testSwarm, 4), coord.id, pubsub.ValidationAccept},
		"replayed by another": {sign(coord, testSwarm, 4), other.id, pubsub.ValidationReject},
		"signed by another":   {sign(other, testSwarm, 4), other.id, pubsub.ValidationReject},
		"another swarm":       {sign(coord, "bafy-other", 4), coord.id, pubsub.ValidationReject},
		"an applied round":    {sign(coord, testSwarm, 3), coord.id, pubsub.ValidationIgnore},
		"junk":                {[]byte("junk"), coord.id, pubsub.ValidationReject},
		"re-encoded envelope": {reencoded(t, sign(coord, testSwarm, 4)), coord.id, pubsub.ValidationReject},
	} {
		if got := v(ctx, other.id, gossipMessage(tc.data, tc.author)); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
	// The coordinator validates its own records as it publishes: no floor.
	if got := roundsValidator(testSwarm, coord.id, nil)(ctx, coord.id, gossipMessage(sign(coord, testSwarm, 0), coord.id)); got != pubsub.ValidationAccept {
		t.Errorf("the coordinator's own record: %v", got)
	}
}

// TestContributorFaultScore: a contributor's gossipsub application score
// counts the faults its own tier 0 proved, like the coordinator's: one
// equivocation puts the peer below the gossip threshold; a peer whose
// second version only came through a relay is still the one scored, never
// the relay.
func TestContributorFaultScore(t *testing.T) {
	base := fakeModelCID()
	g := newRoundGate(testSwarm, 1<<16)
	fs := newFaultScore()
	g.score = fs
	g.open(0, base, 1)
	eq, relay, honest := newTestPeer(t), newTestPeer(t), newTestPeer(t)
	ctx := context.Background()
	g.validate(ctx, eq.id, gossipMessage(eq.contribution(t, 0, base, 1, []byte("a")), eq.id))
	if r := g.validate(ctx, relay.id, gossipMessage(eq.contribution(t, 0, base, 1, []byte("b")), eq.id)); r != pubsub.ValidationIgnore {
		t.Errorf("a relayed second version: %v, want ignore (the relay is not at fault)", r)
	}
	g.validate(ctx, honest.id, gossipMessage(honest.contribution(t, 0, base, 1, []byte("h")), honest.id))
	if s := fs.appScore(eq.id); s >= -100 {
		t.Errorf("equivocator scores %v, not below the gossip threshold", s)
	}
	if s := fs.appScore(relay.id); s != 0 {
		t.Errorf("relay scores %v", s)
	}
	if s := fs.appScore(honest.id); s != 0 {
		t.Errorf("honest peer scores %v", s)
	}
}

// TestPayloadFetchIsBounded: the coordinator waits for an announced
// payload in proportion to its size, not the round's whole deadline; an
// announcement cannot claim more than any encoding of the model takes.
func TestPayloadFetchIsBounded(t *testing.T) {
	const deadline = 30 * time.Second
	max := verify.MaxPayloadBytes(1000)
	if d := payloadFetchTimeout(deadline, 64<<10, max); d > payloadFetchBase+time.Second {
		t.Errorf("64 KiB payload: wait %s", d)
	}
	if d := payloadFetchTimeout(deadline, 1<<40, max); d > payloadFetchBase+time.Second {
		t.Errorf("a claimed terabyte for a 1000-parameter model: wait %s", d)
	}
	if d := payloadFetchTimeout(deadline, -1, max); d != payloadFetchBase {
		t.Errorf("negative size: wait %s", d)
	}
	if d := payloadFetchTimeout(2*time.Second, 1<<20, 8<<20); d != 2*time.Second {
		t.Errorf("never past the round's deadline: %s", d)
	}
}
