package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := smallSwarm(3, 3)
	sc.Verify.Audits, sc.Verify.ExcludeRounds = 2, 4
	sc.Verify.Tier2Sample = 1
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
		}
		at = rec.Prev
	}
	if audited == 0 {
		t.Error("no contribution was audited")
	}
	t.Logf("%d rounds, %d audits passed, the ledger rechecks with every audit replayed", sum.Rounds, audited)
}
