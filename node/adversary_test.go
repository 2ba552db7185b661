package node

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// The adversaries below are test code, run by attacker peers
// (mocknet_test.go): each replaces what an honest contributor would
// announce, while the peer otherwise follows the protocol, so it keeps
// receiving rounds and keeps trying.

// adversary replaces what a contributor announces for a round. c and
// payload are the honest contribution, delta the local update before
// compression. It returns the signed messages to publish.
type adversary interface {
	announce(ctx context.Context, k *attacker, c *record.Contribution, payload []byte, delta []float32) ([][]byte, error)
}

// signed signs c as k and returns the message bytes.
func signed(k *attacker, c *record.Contribution) ([]byte, error) {
	blk, err := record.Sign(k.key, c)
	if err != nil {
		return nil, err
	}
	return blk.RawData(), nil
}

// withPayload is c carrying payload inline instead of its own.
func withPayload(c *record.Contribution, payload []byte) *record.Contribution {
	d := *c
	pc, _ := payloadCID(payload)
	d.Payload, d.Inline, d.PayloadBytes = pc, &payload, int64(len(payload))
	return &d
}

func announceVec(k *attacker, c *record.Contribution, v []float32) ([][]byte, error) {
	payload, err := gradient.Marshal(k.codec, v)
	if err != nil {
		return nil, err
	}
	m, err := signed(k, withPayload(c, payload))
	return [][]byte{m}, err
}

// nanAdversary sends a dense payload holding a NaN, with a valid checksum.
type nanAdversary struct{}

func (nanAdversary) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, delta []float32) ([][]byte, error) {
	dense, _ := gradient.NewCodec(gradient.Dense, 1)
	b, err := gradient.Marshal(dense, delta)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(b[gradient.HeaderSize+4*7:], math.Float32bits(float32(math.NaN())))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[gradient.HeaderSize:], crc32.MakeTable(crc32.Castagnoli)))
	m, err := signed(k, withPayload(c, b))
	return [][]byte{m}, err
}

// scaleAdversary multiplies its update by 1000.
type scaleAdversary struct{}

func (scaleAdversary) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, delta []float32) ([][]byte, error) {
	v := slices.Clone(delta)
	for i := range v {
		v[i] *= 1000
	}
	return announceVec(k, c, v)
}

// noiseAdversary sends random noise on the honest payload's support, with
// the honest payload's norm: it passes every cheap check.
type noiseAdversary struct{}

func (noiseAdversary) announce(_ context.Context, k *attacker, c *record.Contribution, payload []byte, _ []float32) ([][]byte, error) {
	honest, _, err := gradient.Unmarshal(payload, gradient.Limits{})
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(uint64(c.Round), 7))
	v := make([]float32, len(honest))
	var norm float64
	for i, x := range honest {
		if x != 0 {
			v[i] = float32(r.NormFloat64())
			norm += float64(v[i]) * float64(v[i])
		}
	}
	f := float32(gradient.Norm(honest) / math.Sqrt(norm))
	for i := range v {
		v[i] *= f
	}
	return announceVec(k, c, v)
}

// copier republishes another peer's payload of the same round as its own.
type copier struct{}

func (copier) announce(ctx context.Context, k *attacker, c *record.Contribution, own []byte, _ []float32) ([][]byte, error) {
	ownCID, _ := payloadCID(own)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		k.mu.Lock()
		var other []byte
		for pc, b := range k.payloads[c.Round] {
			if !pc.Equals(ownCID) {
				other = b
				break
			}
		}
		k.mu.Unlock()
		if other != nil {
			m, err := signed(k, withPayload(c, other))
			return [][]byte{m}, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, errors.New("copier: no payload to copy")
}

// nearCopier takes another peer's update of the same round, changes every
// value by up to 2 % and announces it as its own: a different payload with
// the same support.
type nearCopier struct{}

func (nearCopier) announce(ctx context.Context, k *attacker, c *record.Contribution, own []byte, delta []float32) ([][]byte, error) {
	msgs, err := copier{}.announce(ctx, k, c, own, delta)
	if err != nil {
		return nil, err
	}
	got, _, _ := record.Open[record.Contribution](msgs[0])
	v, _, err := gradient.Unmarshal(*got.Inline, gradient.Limits{})
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(uint64(c.Round), data.PeerSeed(11, c.Peer)))
	for i, x := range v {
		v[i] = x * float32(1+0.02*(2*r.Float64()-1))
	}
	return announceVec(k, c, v)
}

// replayer contributes honestly once, then announces that first payload
// again for every later round, and re-sends its old signed contribution.
type replayer struct {
	first, firstMsg []byte
}

func (a *replayer) announce(_ context.Context, k *attacker, c *record.Contribution, payload []byte, _ []float32) ([][]byte, error) {
	if a.first == nil {
		m, err := signed(k, withPayload(c, payload))
		a.first, a.firstMsg = payload, m
		return [][]byte{m}, err
	}
	m, err := signed(k, withPayload(c, a.first))
	return [][]byte{m, a.firstMsg}, err
}

// equivocator announces two different contributions for every round.
type equivocator struct{}

func (equivocator) announce(_ context.Context, k *attacker, c *record.Contribution, payload []byte, delta []float32) ([][]byte, error) {
	a, err := signed(k, withPayload(c, payload))
	if err != nil {
		return nil, err
	}
	v := slices.Clone(delta)
	for i := range v {
		v[i] *= 0.5
	}
	second, err := gradient.Marshal(k.codec, v)
	if err != nil {
		return nil, err
	}
	b, err := signed(k, withPayload(c, second))
	return [][]byte{a, b}, err
}

// freeRider sends an all-zero update without training for it.
type freeRider struct{}

func (freeRider) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, delta []float32) ([][]byte, error) {
	return announceVec(k, c, make([]float32, len(delta)))
}

// untrained free-rides on the swarm's own work: it trains nothing and
// announces last round's movement of the model (what everyone already has)
// as its update — plausible in size and direction, but not fitted to its
// shard. In round 0 it has nothing to send but zeros.
type untrained struct {
	prev []float32 // the base of the previous round
}

func (a *untrained) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, delta []float32) ([][]byte, error) {
	v := make([]float32, len(delta))
	if a.prev != nil {
		for i := range v {
			v[i] = a.prev[i] - k.baseParams[i]
		}
	}
	a.prev = slices.Clone(k.baseParams)
	return announceVec(k, c, v)
}

// withholder announces a payload by CID (not inline) that nobody serves:
// the coordinator waits at most one fetch timeout a round for it, and it
// earns nothing — which an honest peer behind a failed link could suffer
// too, so it is not a proven fault.
type withholder struct{}

func (withholder) announce(_ context.Context, k *attacker, c *record.Contribution, payload []byte, _ []float32) ([][]byte, error) {
	d := *c
	hidden := append(slices.Clone(payload), byte(c.Round))
	pc, _ := payloadCID(hidden)
	d.Payload, d.Inline, d.PayloadBytes = pc, nil, int64(len(hidden))
	m, err := signed(k, &d)
	return [][]byte{m}, err
}

// garbler sends malformed bytes: an unsigned junk message every round, and
// a signed contribution whose payload is larger than any encoding of the
// model (round 0) or junk (later rounds). Honest peers do not relay an
// oversized payload (tier 0 rejects it), so only its first one reaches the
// coordinator: after that it is graylisted there, and only its junk
// payloads, which tier 0 cannot tell from real ones, arrive relayed.
type garbler struct{}

func (garbler) announce(_ context.Context, k *attacker, c *record.Contribution, _ []byte, delta []float32) ([][]byte, error) {
	r := rand.New(rand.NewPCG(uint64(c.Round), data.PeerSeed(9, c.Peer)))
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	size := 4096
	if c.Round == 0 {
		size = verify.MaxPayloadBytes(len(delta)) + 1
	}
	m, err := signed(k, withPayload(c, junk(size)))
	return [][]byte{m, junk(300)}, err
}

// swarmRun is what one adversarial run produced.
type swarmRun struct {
	sealed      []RoundSummary
	honest, bad []string // peer IDs
	coordDir    string
}

func (r swarmRun) accuracy() float64 { return r.sealed[len(r.sealed)-1].TestAccuracy }

// adversarySwarm is the swarm every adversarial run trains: a small MLP,
// every peer's contribution checked by tier 2, rounds closing once every
// peer has contributed or after a short deadline (a graylisted adversary
// is no longer heard).
func adversarySwarm(peers int) *config.Swarm {
	sc := smallSwarm(10, peers)
	sc.Model.Hidden = []int{64}
	sc.Train.InnerSteps = 50
	sc.Train.ShardSize = 2000
	// 10 % rather than 1 %: ten rounds of 1 % top-k move too few
	// coordinates for a model whose accuracy run-to-run noise stays under
	// the 1-point bound; the updates are still sparse.
	sc.Compression.Density = 0.1
	sc.Round.Deadline = config.Duration(3 * time.Second)
	sc.Verify.Tier2Sample = peers
	sc.API.Listen = ""
	return sc
}

// honestIdentities are the honest contributors' keys, the same in every
// run: with the same peers drawing the same shards, a run whose adversaries
// are all kept out of the model reproduces the honest-only run's model bit
// for bit.
func honestIdentities(t *testing.T, n int) []crypto.PrivKey {
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(cryptorand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	return keys
}

// runAdversarial runs a coordinator, the honest contributors (one per key)
// and one attacker peer per adversary on one mocknet for the swarm's
// rounds.
func runAdversarial(t *testing.T, identities []crypto.PrivKey, advs []adversary) swarmRun {
	t.Helper()
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	goroutinesBefore := runtime.NumGoroutine()
	honest := len(identities)
	sc := adversarySwarm(honest + len(advs))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tn := newTestNet(t)
	run := swarmRun{coordDir: t.TempDir()}
	var mu sync.Mutex
	coord, err := NewCoordinator(CoordinatorConfig{Swarm: sc, DataDir: run.coordDir, Train: trainSet, Test: testSet.Head(2000), ExitWhenDone: true, Log: quietLog,
		RoundDone: func(s RoundSummary) {
			mu.Lock()
			run.sealed = append(run.sealed, s)
			mu.Unlock()
		}}, WithHost(tn.host(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	swarm, addr := coord.SwarmID(), coord.Addrs()[0]
	// Adversaries may be cut off once graylisted: they stop with the swarm.
	advCtx, stopAdv := context.WithCancel(ctx)
	defer stopAdv()
	var wg, honestDone sync.WaitGroup
	errs := make(chan error, honest+len(advs))
	for i := 0; i < honest+len(advs); i++ {
		var key crypto.PrivKey
		if i < honest {
			key = identities[i]
		}
		h := tn.host(t, key)
		dir := t.TempDir()
		if i >= honest {
			adv := advs[i-honest]
			run.bad = append(run.bad, h.ID().String())
			wg.Go(func() {
				if err := runAttacker(advCtx, h, dir, swarm, addr, trainSet, adv); err != nil && advCtx.Err() == nil {
					errs <- fmt.Errorf("attacker %s (%T): %w", h.ID(), adv, err)
				}
			})
			continue
		}
		run.honest = append(run.honest, h.ID().String())
		honestDone.Go(func() {
			err := RunContributor(ctx, ContributorConfig{SwarmID: swarm, Bootstrap: []string{addr}, DataDir: dir, Train: trainSet, Log: quietLog}, WithHost(h))
			if err != nil {
				errs <- fmt.Errorf("contributor %s: %w", h.ID(), err)
			}
		})
	}
	select {
	case <-coord.Done():
	case <-ctx.Done():
	}
	if err := coord.Err(); err != nil {
		t.Fatal(err)
	}
	// The coordinator keeps serving until every honest contributor has
	// applied the last record; then the attackers stop.
	honestDone.Wait()
	coord.Close()
	stopAdv()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tn.mn.Close()
	checkNoLeak(t, goroutinesBefore)
	return run
}

// ledgerOf opens a finished run's coordinator store, rechecks the ledger
// and returns its records and the most similar pair of honest updates in
// a round (honestSimilarity).
func ledgerOf(t *testing.T, run swarmRun) ([]*record.RoundRecord, float64) {
	t.Helper()
	ctx := context.Background()
	store, err := storage.Open(run.coordDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sum, err := round.Recheck(ctx, store)
	if err != nil {
		t.Fatalf("recheck: %v", err)
	}
	t.Logf("recheck: %d rounds, %d verdicts, %d tier-2 samples, %d scores and %d models reproduced", sum.Rounds, sum.Entries, sum.Sampled, sum.Scores, sum.Models)
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
		recs = append(recs, rec)
		at = rec.Prev
	}
	slices.Reverse(recs)
	// Equivocations link both signed blocks, and the coordinator holds
	// them: a recursive pin of the head keeps the proof.
	refs, err := store.Refs(ctx, sum.Head)
	if err != nil {
		t.Fatalf("refs: %v", err)
	}
	held := map[cid.Cid]bool{}
	for _, c := range refs.Blocks {
		held[c] = true
	}
	for _, rec := range recs {
		for _, e := range rec.Entries {
			if verify.Kind(e.Reason) != verify.ReasonEquivocation {
				continue
			}
			if e.EvidenceBlocks == nil || len(*e.EvidenceBlocks) != 2 {
				t.Errorf("round %d: equivocation by %s links evidence %v, want both blocks", rec.Round, e.Peer, e.EvidenceBlocks)
				continue
			}
			for _, c := range *e.EvidenceBlocks {
				if !held[c] {
					t.Errorf("round %d: equivocation evidence %s is not reached from the head", rec.Round, c)
				}
			}
		}
	}
	return recs, honestSimilarity(t, store, run, recs)
}

// TestAdversaries runs a mixed run of 3 kinds among 8 peers and, without
// -short, for each kind of cheating peer, 4 honest contributors and 2
// adversaries of that kind for 10 rounds, against an honest-only run: every adversary ends
// with a score below every honest peer's, the accuracy stays within 1 point
// of the honest-only run, nothing crashes, every adversary's rejection is in
// the ledger with its reason, and the whole ledger rechecks.
func TestAdversaries(t *testing.T) {
	if raceEnabled {
		t.Skip("adversarial swarms take minutes; their concurrent paths are the ones TestRoundsOnMocknet covers under -race")
	}
	ids := honestIdentities(t, 5)
	// make test (-short) runs the mixed run; make test-long every kind.
	t.Run("mixed", func(t *testing.T) {
		base5 := runAdversarial(t, ids, nil)
		t.Logf("honest only, 5 peers: accuracy %.4f", base5.accuracy())
		ledgerOf(t, base5)
		run := runAdversarial(t, ids, []adversary{scaleAdversary{}, copier{}, equivocator{}})
		checkRun(t, run, base5.accuracy(), []string{verify.ReasonNorm, verify.ReasonDuplicate, verify.ReasonEquivocation})
	})
	if testing.Short() {
		return
	}
	base := runAdversarial(t, ids[:4], nil)
	baseline := base.accuracy()
	t.Logf("honest only: accuracy %.4f", baseline)
	ledgerOf(t, base)

	// keptOut: every one of the adversaries' 20 contributions must be
	// rejected (the README's "×10" rows); the replayer's first round is
	// honest work, the untrained free rider's resent movement is now and
	// then useful and tier 2 judges noise by a margin, so those may land one.
	kinds := []struct {
		name    string
		make    func() adversary
		reasons []string // the rejection kinds this adversary must earn
		keptOut bool
	}{
		{"nan", func() adversary { return nanAdversary{} }, []string{verify.ReasonMalformed}, true},
		{"scaled-x1000", func() adversary { return scaleAdversary{} }, []string{verify.ReasonNorm}, true},
		// Noise of honest norm fails tier 2's magnitude test nearly always
		// (at most 0.30x the reference, threshold 0.35); now and then one
		// of 20 passes, clipped and scored.
		{"noise", func() adversary { return noiseAdversary{} }, nil, false},
		{"copier", func() adversary { return copier{} }, []string{verify.ReasonDuplicate}, true},
		{"near-copier", func() adversary { return nearCopier{} }, []string{verify.ReasonNearDuplicate}, true},
		{"replayer", func() adversary { return &replayer{} }, []string{verify.ReasonReplay}, false},
		{"equivocator", func() adversary { return equivocator{} }, []string{verify.ReasonEquivocation}, true},
		{"free-rider", func() adversary { return freeRider{} }, []string{verify.ReasonEmpty}, true},
		{"untrained", func() adversary { return &untrained{} }, []string{verify.ReasonEmpty, verify.ReasonTier2}, false},
		// The oversized payload of round 0 is a fault every peer proves
		// at tier 0: each cuts the garbler off (its own fault score, the
		// topic's invalid-message penalty), so its later junk reaches
		// nobody and the ledger holds the one rejection.
		{"malformed", func() adversary { return garbler{} }, []string{verify.ReasonOversized}, true},
		{"withholder", func() adversary { return withholder{} }, []string{verify.ReasonUnavailable}, true},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			run := runAdversarial(t, ids[:4], []adversary{k.make(), k.make()})
			checkRun(t, run, baseline, k.reasons)
			if k.keptOut {
				checkKeptOut(t, run, baseline)
			}
		})
	}
}

// checkKeptOut asserts that no adversarial contribution was accepted and
// that the model is then the honest-only run's, bit for bit: the same
// honest updates aggregated the same way give the same accuracy exactly.
func checkKeptOut(t *testing.T, run swarmRun, baseline float64) {
	t.Helper()
	recs, _ := ledgerOf(t, run)
	bad := map[string]bool{}
	for _, p := range run.bad {
		bad[p] = true
	}
	in := 0
	for _, rec := range recs {
		for _, e := range rec.Entries {
			if bad[e.Peer] && e.Verdict == record.VerdictAccepted {
				t.Errorf("round %d: adversary %s accepted", rec.Round, e.Peer)
				in++
			}
		}
	}
	if acc := run.accuracy(); in == 0 && acc != baseline {
		t.Errorf("every adversarial update kept out, yet accuracy %.4f differs from the honest-only run's %.4f", acc, baseline)
	}
}

func checkRun(t *testing.T, run swarmRun, baseline float64, reasons []string) {
	t.Helper()
	if len(run.sealed) != 10 {
		t.Fatalf("%d rounds sealed, want 10", len(run.sealed))
	}
	acc := run.accuracy()
	t.Logf("accuracy %.4f (honest only %.4f)", acc, baseline)
	// One-sided: what an adversary must not do is cost accuracy. With
	// adversaries in the swarm the honest peers' rounds fill at other
	// moments, so the run can also end above the honest-only one (seen:
	// 0.9385 against 0.9275 under load), which is no harm.
	if baseline-acc > 0.01 {
		t.Errorf("accuracy %.4f is more than 1 point below the honest-only run's %.4f", acc, baseline)
	}
	recs, sim := ledgerOf(t, run)
	last := recs[len(recs)-1]
	if sim >= verify.DefaultTier1Params().NearDuplicate {
		t.Errorf("two honest updates are %.3f similar: the near-duplicate threshold would reject one", sim)
	} else {
		t.Logf("most similar pair of honest updates in a round: %.3f (near-duplicate threshold %.2f)", sim, verify.DefaultTier1Params().NearDuplicate)
	}
	score := map[string]record.PeerScore{}
	for _, s := range last.Scores {
		score[s.Peer] = s
	}
	worstHonest := math.Inf(1)
	for _, p := range run.honest {
		s, ok := score[p]
		if !ok || s.Rejected > 0 {
			t.Errorf("honest peer %s: score %+v", p, s)
		}
		worstHonest = min(worstHonest, s.Score)
	}
	for _, p := range run.bad {
		s := score[p]
		t.Logf("adversary %s: score %.3f accepted %d rejected %d %v", p, s.Score, s.Accepted, s.Rejected, counts(s.Rejections))
		if s.Score >= worstHonest {
			t.Errorf("adversary %s scores %.3f, not below the worst honest peer's %.3f", p, s.Score, worstHonest)
		}
	}
	// Every rejection of an adversary is in the ledger with its reason.
	qual := map[string]int{}
	defer func() { t.Logf("tier-2 outcomes: %v", qual) }()
	isBad := map[string]bool{}
	for _, p := range run.bad {
		isBad[p] = true
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		for _, e := range rec.Entries {
			if e.Tier2 != nil {
				who := "honest"
				if isBad[e.Peer] {
					who = "adversary"
				}
				q := verify.Quality(*e.Tier2)
				qual[who+fmt.Sprintf(" %+.0f", q)]++
				if os.Getenv("TIER2_DEBUG") != "" {
					x := e.Tier2
					t.Logf("tier2 %s own/ref %.3f own %.4f random %.4f held %.4f", who, (x.OwnBefore-x.OwnAfter)/x.Reference, x.OwnBefore-x.OwnAfter, x.RandomBefore-x.RandomAfter, x.HeldBefore-x.HeldAfter)
				}
			}
			if e.Verdict == "rejected" {
				if !isBad[e.Peer] {
					t.Errorf("round %d: honest peer %s rejected: %s", rec.Round, e.Peer, e.Reason)
				}
				if e.Reason == "" {
					t.Errorf("round %d: peer %s rejected without a reason", rec.Round, e.Peer)
				}
				seen[verify.Kind(e.Reason)] = true
			}
		}
	}
	for _, r := range reasons {
		if !seen[r] {
			t.Errorf("no rejection for %q in the ledger (saw %v)", r, seen)
		}
	}
}

func counts(rc *[]record.ReasonCount) string {
	if rc == nil {
		return ""
	}
	var b strings.Builder
	for _, r := range *rc {
		fmt.Fprintf(&b, "%s×%d ", r.Reason, r.Count)
	}
	return b.String()
}

// honestSimilarity is the highest verify.Similarity between two honest
// peers' accepted updates of one round: how close honest work comes to
// what tier 1 calls a near duplicate.
func honestSimilarity(t *testing.T, store *storage.Store, run swarmRun, recs []*record.RoundRecord) float64 {
	t.Helper()
	ctx := context.Background()
	honest := map[string]bool{}
	for _, p := range run.honest {
		honest[p] = true
	}
	best := 0.0
	for _, rec := range recs {
		var vecs [][]float32
		for _, e := range rec.Entries {
			if !honest[e.Peer] || e.Verdict != "accepted" {
				continue
			}
			b, err := store.Get(ctx, e.Payload)
			if err != nil {
				t.Fatal(err)
			}
			v, _, err := gradient.Unmarshal(b.RawData(), gradient.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			vecs = append(vecs, v)
		}
		for i := range vecs {
			for j := i + 1; j < len(vecs); j++ {
				best = max(best, verify.Similarity(vecs[i], vecs[j]))
			}
		}
	}
	return best
}
