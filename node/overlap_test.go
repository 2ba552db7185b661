package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// staleBase is an attacker of an overlapped swarm that builds on the wrong
// model: two rounds behind where it can (it remembers each round's base),
// else the round's own base (what a peer ignoring round.overlap sends).
// Tier 0 ignores both, so neither reaches a record.
type staleBase struct {
	mu    sync.Mutex
	bases map[int64]cid.Cid // round -> its base, as the attacker saw it
	sent  int
}

func (a *staleBase) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, _ []float32) ([][]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bases[c.Round] = c.Base
	if c.Round == 0 {
		return nil, nil // round 0's own base is the right one
	}
	if b, ok := a.bases[c.Round-2]; ok {
		c.Base = b
	}
	a.sent++
	m, err := signed(k, c)
	return [][]byte{m}, err
}

// overlapRun is what one mocknet swarm run of TestOverlapOnMocknet saw.
type overlapRun struct {
	accuracy  float64
	curve     []float64     // test accuracy after each round
	wall      time.Duration // the contributors' start to the last seal
	compute   time.Duration // local work, summed over contributors
	worked    []map[int64]bool
	applied   []map[int64]bool // rounds each contributor replayed to the record's model
	dir       string           // the coordinator's data dir
	sealedAll bool
}

// runOverlapSwarm runs sc with three honest contributors and, if adv is
// set, an attacker, until the last round.
func runOverlapSwarm(t *testing.T, sc *config.Swarm, trainSet, testSet *data.Set, adv adversary) overlapRun {
	t.Helper()
	const peers = 3
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tn := newTestNet(t)
	run := overlapRun{dir: t.TempDir(), sealedAll: true}
	var mu sync.Mutex
	var lastSeal time.Time
	rounds := sc.Train.Rounds
	coord, err := NewCoordinator(CoordinatorConfig{Swarm: sc, DataDir: run.dir, Train: trainSet, Test: testSet, ExitWhenDone: true, Log: quietLog,
		RoundDone: func(s RoundSummary) {
			mu.Lock()
			defer mu.Unlock()
			lastSeal = time.Now()
			if s.Accepted != peers {
				run.sealedAll = false
				t.Logf("round %d: %d accepted, %d rejected", s.Round, s.Accepted, s.Rejected)
			}
			run.curve = append(run.curve, s.TestAccuracy)
			if s.Round == int64(rounds-1) {
				run.accuracy = s.TestAccuracy
			}
		}}, WithHost(tn.host(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, peers+1)
	for i := range peers {
		run.worked = append(run.worked, map[int64]bool{})
		run.applied = append(run.applied, map[int64]bool{})
		h := tn.host(t, nil)
		cdir := t.TempDir()
		wg.Go(func() {
			err := RunContributor(ctx, ContributorConfig{SwarmID: coord.SwarmID(), Bootstrap: []string{coord.Addrs()[0]}, DataDir: cdir, Train: trainSet, Log: quietLog,
				Event: func(ev Event) {
					mu.Lock()
					defer mu.Unlock()
					switch e := ev.(type) {
					case Worked:
						run.worked[i][e.Round] = true
						run.compute += e.Compute
					case Applied:
						run.applied[i][e.Round] = e.Replayed
					case Refused:
						t.Logf("contributor %d refused round %d: %s", i, e.Round, e.Reason)
					}
				}}, WithHost(h))
			if err != nil {
				errs <- fmt.Errorf("contributor %s: %w", h.ID(), err)
			}
		})
	}
	advCtx, advCancel := context.WithCancel(ctx)
	defer advCancel()
	if adv != nil {
		h := tn.host(t, nil)
		adir := t.TempDir()
		wg.Go(func() {
			if err := runAttacker(advCtx, h, adir, coord.SwarmID(), coord.Addrs()[0], trainSet, adv); err != nil && advCtx.Err() == nil {
				errs <- fmt.Errorf("attacker: %w", err)
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
	advCancel()
	wg.Wait()
	coord.Close()
	tn.mn.Close()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	run.wall = lastSeal.Sub(started)
	return run
}

// TestOverlapOnMocknet runs the same swarm with and without round.overlap
// (tier 2 and tier-3 audits on): overlapped, every contributor works every
// round, the next round's work done while the last is sealed, each
// contribution built on the previous round's base; every honest update is
// accepted, every contributor replays every record to its model, an
// attacker building two rounds behind (or on the round's own base) never
// reaches a record, the ledger rechecks with every audit replayed, and the
// accuracy is close to the normal schedule's.
func TestOverlapOnMocknet(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	sc := smallSwarm(rounds, 3)
	sc.Verify.Audits, sc.Verify.ExcludeRounds = 2, 4
	sc.Verify.Tier2Sample = 1
	sc.API.Listen = ""
	normal := runOverlapSwarm(t, sc, trainSet, testSet.Head(1000), nil)

	osc := smallSwarm(rounds, 3)
	osc.Verify, osc.API = sc.Verify, sc.API
	osc.Round.Overlap = true
	osc.Train.OuterOptimizer.Momentum = 0.8 // what benchmarks/README.md recommends with overlap
	adv := &staleBase{bases: map[int64]cid.Cid{}}
	over := runOverlapSwarm(t, osc, trainSet, testSet.Head(1000), adv)
	t.Logf("normal: accuracy %.4f, local work %s of 3 x %s; overlapped: accuracy %.4f, local work %s of 3 x %s; the attacker sent %d",
		normal.accuracy, normal.compute.Round(time.Millisecond), normal.wall.Round(time.Millisecond),
		over.accuracy, over.compute.Round(time.Millisecond), over.wall.Round(time.Millisecond), adv.sent)
	t.Logf("normal curve %.3f\noverlapped   %.3f", normal.curve, over.curve)
	if !over.sealedAll {
		t.Error("an overlapped round did not accept every honest contribution")
	}
	for i := range over.worked {
		for r := int64(0); r < rounds; r++ {
			if !over.worked[i][r] {
				t.Errorf("contributor %d did not work round %d", i, r)
			}
			if replayed, ok := over.applied[i][r]; !ok || !replayed {
				t.Errorf("contributor %d round %d: applied %v, replayed %v", i, r, ok, replayed)
			}
		}
	}
	if adv.sent < rounds-1 {
		t.Errorf("the attacker sent %d contributions, want one a round", adv.sent)
	}
	if over.accuracy < overlapAccuracyFloor || over.accuracy < normal.accuracy-overlapAccuracySlack {
		t.Errorf("overlapped accuracy %.4f, normal %.4f: want at least %.2f and at most %.2f below", over.accuracy, normal.accuracy, overlapAccuracyFloor, overlapAccuracySlack)
	}

	store, err := storage.Open(over.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	sum, err := round.RecheckWith(ctx, store, round.RecheckOptions{AuditData: trainSet})
	if err != nil {
		t.Fatalf("recheck of the overlapped ledger, audits replayed: %v", err)
	}
	// Walk back from the head: round r's contributions are built on round
	// r-1's base (round 0's and round 1's on the initial model).
	var recs []*record.RoundRecord
	for at := &sum.Head; at != nil; {
		b, err := store.Get(ctx, *at)
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
	audited := 0
	for r, rec := range recs {
		want := rec.Base
		if r > 0 {
			want = recs[r-1].Base
		}
		for _, e := range rec.Entries {
			if e.Audit != nil {
				audited++
			}
			cb, err := store.Get(ctx, e.Contribution)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := record.OpenBlock[record.Contribution](cb)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Base.Equals(want) {
				t.Errorf("round %d: %s built on %s, want %s", r, e.Peer, c.Base, want)
			}
			if e.Verdict != record.VerdictAccepted {
				t.Errorf("round %d: %s rejected: %s (the attacker must never reach a record)", r, e.Peer, e.Reason)
			}
		}
	}
	if audited == 0 {
		t.Error("no overlapped contribution was audited")
	}

	// A coordinator restarted on the data dir resumes with the previous
	// round's base loaded: what the next round's contributions are built on.
	last := recs[len(recs)-1]
	store.Close()
	tn := newTestNet(t)
	again, err := NewCoordinator(CoordinatorConfig{Swarm: osc, DataDir: over.dir, Train: trainSet, ExitWhenDone: true, Log: quietLog}, WithHost(tn.host(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	built, params := again.p.Built(again.st)
	file, err := round.CheckpointFile(again.p.Model, params)
	if err != nil {
		t.Fatal(err)
	}
	if fc, err := storage.FileCID(file); err != nil || !built.Equals(last.Base) || !fc.Equals(last.Base) {
		t.Errorf("resumed at round %d built on %s (parameters hash to %s, %v), want the last record's base %s", again.st.Round, built, fc, err, last.Base)
	}
}

// overlapAccuracySlack is how far below the normal schedule's accuracy an
// overlapped swarm may end in TestOverlapOnMocknet, and overlapAccuracyFloor
// what it must reach. Ten short rounds from scratch: an overlapped swarm's
// first two rounds both start from the initial model and every update
// lands a round late, so early in training it trails the normal schedule
// by one to two rounds (measured 0.4 to 3.3 points below after 10 rounds
// in seven runs, 6.0 in one under -race; random peer IDs draw other shards
// each run), while benchmarks/sim measures -0.27 to +0.09 points at 60
// rounds. A swarm that stopped learning under overlap ends far below both.
const (
	overlapAccuracySlack = 0.07
	overlapAccuracyFloor = 0.80
)
