package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// assignment is the contribution of the last round the attacker is
// assigned to audit (round.PeerAuditAssignment over the record's accepted
// entries, drawn with its AuditSeed), or nil.
func (k *attacker) assignment() *record.PeerVerdict {
	rec := k.last
	if rec == nil {
		return nil
	}
	var peers []string
	contribs := make([]cid.Cid, len(rec.Entries))
	for i, e := range rec.Entries {
		contribs[i] = e.Contribution
		if e.Verdict == record.VerdictAccepted {
			peers = append(peers, e.Peer)
		}
	}
	target, ok := round.PeerAuditAssignment(round.AuditSeed(k.lastSeed, contribs), peers)[k.id.String()]
	if !ok {
		return nil
	}
	for _, e := range rec.Entries {
		if e.Peer == target {
			return &record.PeerVerdict{Round: rec.Round, Peer: target, Contribution: e.Contribution}
		}
	}
	return nil
}

// falseAccuser does honest work but signs a "fail" verdict on whatever
// contribution it is assigned, without recomputing it.
type falseAccuser struct{}

func (falseAccuser) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, _ []float32) ([][]byte, error) {
	d := *c
	d.PeerAudit = k.assignment()
	m, err := signed(k, &d)
	return [][]byte{m}, err
}

// auditedFlipper commits to its honest state but sends its update
// negated: an update no replay of its state gives.
type auditedFlipper struct{}

func (auditedFlipper) announce(_ context.Context, k *attacker, c *record.Contribution, payload []byte, _ []float32) ([][]byte, error) {
	vec, err := verify.DecodePayload(payload, len(k.baseParams))
	if err != nil {
		return nil, err
	}
	for i := range vec {
		vec[i] = -vec[i]
	}
	return announceVec(k, c, vec)
}

// TestPeerAuditAttackersOnMocknet runs 3 honest contributors, a false
// accuser and a flipper with peer audits on (the coordinator audits two
// contributions a round): no honest peer is rejected; the accuser's false
// "fail" verdicts are refereed and charged to it as accusations; every
// flipper update is rejected, in its round by the coordinator's audit or,
// when that draw missed it, in the next by the peer audit, refereed; and
// the ledger rechecks with every audit and referee replayed.
func TestPeerAuditAttackersOnMocknet(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := smallSwarm(5, 5)
	// Two audit slots: back from its exclusion, each attacker (both with
	// a proven fault on record) is audited first.
	sc.Verify.Audits, sc.Verify.ExcludeRounds, sc.Verify.PeerAudits = 2, 1, true
	sc.Verify.Tier2Sample = 0 // tier 2 would flag the flipper for the coordinator's audit first
	sc.API.Listen = ""
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tn := newTestNet(t)
	dir := t.TempDir()
	coord, err := NewCoordinator(CoordinatorConfig{Swarm: sc, DataDir: dir, Train: trainSet, Test: testSet.Head(500), ExitWhenDone: true, Log: quietLog}, WithHost(tn.host(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	var wg, attackers sync.WaitGroup
	errs := make(chan error, 5)
	for range 3 {
		h := tn.host(t, nil)
		cdir := t.TempDir()
		wg.Go(func() {
			if err := RunContributor(ctx, ContributorConfig{SwarmID: coord.SwarmID(), Bootstrap: []string{coord.Addrs()[0]}, DataDir: cdir, Train: trainSet, Log: quietLog}, WithHost(h)); err != nil {
				errs <- fmt.Errorf("contributor %s: %w", h.ID(), err)
			}
		})
	}
	role := map[string]string{}
	for name, adv := range map[string]adversary{"accuser": falseAccuser{}, "flipper": auditedFlipper{}} {
		h := tn.host(t, nil)
		role[h.ID().String()] = name
		adir := t.TempDir()
		attackers.Go(func() {
			if err := runAttacker(ctx, h, adir, coord.SwarmID(), coord.Addrs()[0], trainSet, adv); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	select {
	case <-coord.Done():
	case <-ctx.Done():
		t.Fatal("the swarm did not finish in time")
	}
	if err := coord.Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	cancel() // an attacker cut off from the records waits for ctx
	attackers.Wait()
	coord.Close()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tn.mn.Close()
	store, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sum, err := round.RecheckWith(context.Background(), store, round.RecheckOptions{AuditData: trainSet})
	if err != nil {
		t.Fatalf("recheck replaying the audits and referees: %v", err)
	}
	var recs []*record.RoundRecord
	for at := &sum.Head; at != nil; {
		b, err := store.Get(context.Background(), *at)
		if err != nil {
			t.Fatal(err)
		}
		rec, _, err := record.OpenBlock[record.RoundRecord](b)
		if err != nil {
			t.Fatal(err)
		}
		recs = append([]*record.RoundRecord{rec}, recs...)
		at = rec.Prev
	}
	kinds := map[string]map[string]int{}
	flipperLanded := -1
	for _, rec := range recs {
		for _, e := range rec.Entries {
			r := role[e.Peer]
			if r == "" {
				r = "honest"
			}
			if kinds[r] == nil {
				kinds[r] = map[string]int{}
			}
			kinds[r][verify.Kind(e.Reason)]++
			switch {
			case r == "honest" && e.Verdict != record.VerdictAccepted:
				t.Errorf("round %d: honest %s rejected: %s", rec.Round, e.Peer, e.Reason)
			case r == "flipper" && e.Verdict == record.VerdictAccepted:
				if flipperLanded >= 0 {
					t.Errorf("round %d: the flipper landed again after round %d", rec.Round, flipperLanded)
				}
				flipperLanded = int(rec.Round)
			case r == "flipper" && int(rec.Round) == flipperLanded+1 && flipperLanded >= 0 && !strings.Contains(e.Reason, "refereed"):
				t.Errorf("round %d: the flipper's landed update of round %d was not caught by its peer audit: %q", rec.Round, flipperLanded, e.Reason)
			}
		}
	}
	if kinds["accuser"][verify.ReasonAccusation] == 0 {
		t.Errorf("the false accuser was never charged: %v", kinds["accuser"])
	}
	if kinds["flipper"][""] > 1 {
		t.Errorf("the flipper landed %d updates", kinds["flipper"][""])
	}
	t.Logf("%d rounds; verdicts by role and reason kind: %v; flipper landed in round %d (-1: never)", sum.Rounds, kinds, flipperLanded)
}
