package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// TestAuditsOnMocknet runs a swarm with tier 3 on (verify.audits): each
// contributor commits to its worker state and serves it over bitswap, the
// coordinator fetches and replays every drawn contribution, every honest
// audit passes, and the ledger rechecks with every audit replayed from the
// coordinator's store.
func TestAuditsOnMocknet(t *testing.T) {
	sc := smallSwarm(3, 3)
	sc.Verify.Audits, sc.Verify.ExcludeRounds = 2, 4
	sc.Verify.Tier2Sample = 1
	checkAuditedSwarm(t, sc, func(*record.RoundRecord, record.Entry, *record.Contribution) {})
}

// TestPeerAuditsOnMocknet runs a swarm with peer audits on: from round 1
// each contributor recomputes the contribution of the last round it is
// assigned (fetching that peer's states over bitswap) and signs its
// verdict into its next contribution; every verdict of honest peers on
// honest work passes, nothing is refereed, and the ledger rechecks.
func TestPeerAuditsOnMocknet(t *testing.T) {
	sc := smallSwarm(4, 3)
	sc.Verify.Audits, sc.Verify.ExcludeRounds, sc.Verify.PeerAudits = 1, 4, true
	verdicts := 0
	checkAuditedSwarm(t, sc, func(rec *record.RoundRecord, e record.Entry, c *record.Contribution) {
		if e.Referee != nil {
			t.Errorf("round %d: %s's verdict was refereed", rec.Round, e.Peer)
		}
		if v := c.PeerAudit; v != nil {
			verdicts++
			if !v.Pass || v.Round != rec.Round-1 || v.Peer == e.Peer {
				t.Errorf("round %d: %s's verdict %+v", rec.Round, e.Peer, v)
			}
		}
	})
	if verdicts == 0 {
		t.Error("no contributor signed a peer-audit verdict")
	}
	t.Logf("%d peer-audit verdicts, every one a pass", verdicts)
}

// checkAuditedSwarm runs sc with 3 honest contributors on mocknet, checks
// that no contribution is rejected, hands every entry and its contribution
// to each, and rechecks the ledger with every audit replayed.
func checkAuditedSwarm(t *testing.T, sc *config.Swarm, each func(*record.RoundRecord, record.Entry, *record.Contribution)) {
	t.Helper()
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
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
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		h := tn.host(t, nil)
		cdir := t.TempDir()
		wg.Go(func() {
			err := RunContributor(ctx, ContributorConfig{SwarmID: coord.SwarmID(), Bootstrap: []string{coord.Addrs()[0]}, DataDir: cdir, Train: trainSet, Log: quietLog}, WithHost(h))
			if err != nil {
				errs <- fmt.Errorf("contributor %s: %w", h.ID(), err)
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
		t.Fatalf("recheck replaying the audits: %v", err)
	}
	audited := 0
	for at := &sum.Head; at != nil; {
		b, err := store.Get(context.Background(), *at)
		if err != nil {
			t.Fatal(err)
		}
		rec, _, err := record.OpenBlock[record.RoundRecord](b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rec.Entries {
			if e.Verdict != record.VerdictAccepted {
				t.Errorf("round %d: honest %s rejected: %s", rec.Round, e.Peer, e.Reason)
			}
			if e.Audit != nil {
				audited++
			}
			cb, err := store.Get(context.Background(), e.Contribution)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := record.OpenBlock[record.Contribution](cb)
			if err != nil {
				t.Fatal(err)
			}
			each(rec, e, c)
		}
		at = rec.Prev
	}
	if audited == 0 {
		t.Error("no contribution was audited")
	}
	t.Logf("%d rounds, %d audits passed, the ledger rechecks with every audit replayed", sum.Rounds, audited)
}
