package round

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

func testSwarm() *config.Swarm {
	sc := config.Default()
	sc.Name = "engine"
	sc.Model.Hidden = []int{8}
	sc.Train.InnerSteps = 3
	sc.Train.BatchSize = 16
	sc.Train.ShardSize = 200
	sc.Compression.Density = 0.1
	sc.Verify.Tier2Sample = 2
	return sc
}

func key(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// ledger is a swarm sealed by Run into a store, as the coordinator seals
// it: what the equivalence test replays.
type ledger struct {
	store    *storage.Store
	p        Params
	manifest *record.SwarmManifest
	outcomes []Outcome
	coordKey crypto.PrivKey
	records  []cid.Cid
	flipper  string // the audited ledger's cheat
}

// sealLedger runs rounds rounds of workers honest peers (plus, each
// round, a copier and a peer sending NaN-free garbage) through Run with
// tier 2 on synthetic data, storing every block the way the coordinator
// does.
func sealLedger(t *testing.T, rounds, workers int) *ledger {
	t.Helper()
	return sealLedgerWith(t, rounds, workers, false)
}

// sealLedgerWith seals with tier 3 when audited: every contribution
// commits to its state, every candidate is audited, proven faults exclude
// for 2 rounds, and one more peer (the flipper, last of the honest ones)
// trains honestly but sends its update negated.
func sealLedgerWith(t *testing.T, rounds, workers int, audited bool) *ledger {
	t.Helper()
	return sealLedgerOpts(t, rounds, workers, audited, false, nil)
}

// sealLedgerOverlap is sealLedgerWith with overlapped rounds when overlap:
// every peer works on the round's Built model.
func sealLedgerOverlap(t *testing.T, rounds, workers int, audited, overlap bool) *ledger {
	t.Helper()
	return sealLedgerOpts(t, rounds, workers, audited, overlap, nil)
}

// sealLedgerOn is sealLedgerWith with the auditor's replay model wrapped
// by build (nil: as it is), standing in for another build's arithmetic.
func sealLedgerOn(t *testing.T, rounds, workers int, audited bool, build func(train.Model) train.Model) *ledger {
	t.Helper()
	return sealLedgerOpts(t, rounds, workers, audited, false, build)
}

// sealLedgerOpts is the ledger sealer behind the three above.
func sealLedgerOpts(t *testing.T, rounds, workers int, audited, overlap bool, build func(train.Model) train.Model) *ledger {
	t.Helper()
	ctx := context.Background()
	sc := testSwarm()
	sc.Round.Overlap = overlap
	if audited {
		sc.Verify.Audits, sc.Verify.ExcludeRounds = 10, 2
	}
	p := ParamsOf(sc)
	trainSet, testSet := data.Synthetic(2000, 1), data.Synthetic(500, 2)
	scratch, err := train.New(p.Model, sc.Train.BatchSize, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	defer scratch.Close()
	replay, err := train.New(p.Model, sc.Train.BatchSize, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	g := newGenesis(t, sc, train.Snapshot(scratch))
	store, put, putFile, m, ck, swarm := g.store, g.put, g.putFile, g.manifest, g.coordKey, g.swarm
	l := &ledger{store: store, p: p, manifest: m, coordKey: ck}
	type peerState struct {
		key crypto.PrivKey
		id  peer.ID
		w   *Worker
	}
	var peers []peerState
	if audited {
		workers++
	}
	for i := 0; i < workers; i++ {
		k, id := key(t)
		model, err := train.New(p.Model, sc.Train.BatchSize, sc.Seed)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { model.Close() })
		w, err := NewWorker(p, model)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, peerState{k, id, w})
	}
	copierKey, copierID := key(t)
	st := Genesis(m, train.Snapshot(scratch))
	var prev *cid.Cid
	for r := 0; r < rounds; r++ {
		var in []Contribution
		sign := func(k crypto.PrivKey, c *record.Contribution, payload []byte) {
			pc, _ := verify.PayloadCID(payload)
			c.Payload, c.Inline, c.PayloadBytes = pc, &payload, int64(len(payload))
			b, err := record.Sign(k, c)
			if err != nil {
				t.Fatal(err)
			}
			put(b)
			pb, _ := blocks.NewBlockWithCid(payload, pc)
			put(pb)
			in = append(in, Contribution{Record: c, Block: b.Cid(), Payload: payload})
		}
		var first []byte
		for i, ps := range peers {
			start := ps.w.State()
			builtOn, built := p.Built(st)
			payload, _, stats, err := ps.w.Work(ctx, built, Shard(trainSet, st.Seed, ps.id.String(), sc.Train.ShardSize), uint64(st.Seed))
			if err != nil {
				t.Fatal(err)
			}
			seed := st.Seed
			// A claimed sample count far above what the round allows
			// must not change the weight.
			c := &record.Contribution{Swarm: swarm, Round: st.Round, Peer: ps.id.String(), Base: builtOn, Codec: p.Codec,
				Samples: int64(stats.Samples) * 100, Loss: stats.MeanLoss, Created: 1, Seed: &seed}
			if audited {
				for _, s := range []struct {
					v  []float32
					to **cid.Cid
				}{{start, &c.Start}, {ps.w.State(), &c.End}} {
					f, err := StateFile(s.v)
					if err != nil {
						t.Fatal(err)
					}
					fc := putFile(f)
					*s.to = &fc
				}
				if i == len(peers)-1 {
					vec, err := verify.DecodePayload(payload, len(st.Params))
					if err != nil {
						t.Fatal(err)
					}
					for j := range vec {
						vec[j] = -vec[j]
					}
					if payload, err = gradient.Marshal(ps.w.Codec(), vec); err != nil {
						t.Fatal(err)
					}
					l.flipper = ps.id.String()
				}
			}
			sign(ps.key, c, payload)
			if first == nil {
				first = payload
			}
		}
		seed := st.Seed
		sign(copierKey, &record.Contribution{Swarm: swarm, Round: st.Round, Peer: copierID.String(), Base: in[0].Record.Base, Codec: p.Codec, Created: 1, Seed: &seed}, first)
		t2 := &DataTier2{Model: scratch, Train: trainSet, Test: testSet, ShardSize: sc.Train.ShardSize, SampleSize: sc.Verify.Tier2Sample}
		var auditor Auditor
		if audited {
			var m train.Model = replay
			if build != nil {
				m = build(replay)
			}
			auditor = &DataAuditor{P: p, Model: m, Train: trainSet, File: store.ReadFile, Audits: sc.Verify.Audits,
				Payload: func(ctx context.Context, c cid.Cid) ([]byte, error) {
					b, err := store.Get(ctx, c)
					if err != nil {
						return nil, err
					}
					return b.RawData(), nil
				}}
		}
		out, err := RunWith(ctx, p, st, in, Checks{Tier2: t2, Audit: auditor})
		if err != nil {
			t.Fatal(err)
		}
		if got := putFile(out.ModelFile); !got.Equals(out.Record.Model) {
			t.Fatalf("model file %s, record %s", got, out.Record.Model)
		}
		putFile(out.OuterFile)
		rec := out.Record
		rec.Swarm, rec.Prev, rec.Sealed = swarm, prev, time.Now().UnixMilli()
		rb, err := record.Sign(ck, &rec)
		if err != nil {
			t.Fatal(err)
		}
		put(rb)
		if err := store.SetHead(ctx, "ledger", rb.Cid()); err != nil {
			t.Fatal(err)
		}
		c := rb.Cid()
		prev = &c
		l.records = append(l.records, c)
		l.outcomes = append(l.outcomes, out)
		st = out.Next
	}
	return l
}

// TestSealRecheckReplayAgree is the round engine's equivalence: what the
// sealer computed (Run), what an observer recomputes from the stored ledger
// (Recheck) and what a contributor replays from each record (Replay) are
// the same records and the same models, bit for bit.
func TestSealRecheckReplayAgree(t *testing.T) {
	l := sealLedger(t, 3, 3)
	ctx := context.Background()
	sum, err := Recheck(ctx, l.store)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Models != 3 || sum.Entries != 12 || sum.Sampled != 6 {
		t.Errorf("recheck: %+v, want 3 models, 12 verdicts, 6 tier-2 samples", sum)
	}
	st := Genesis(l.manifest, nil)
	init, err := l.store.ReadFile(ctx, l.manifest.InitialModel)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := l.p.NumParams()
	if st.Params, err = ModelVector(l.p.Model, init); err != nil {
		t.Fatal(err)
	}
	st.Outer = make([]float32, n)
	for r, out := range l.outcomes {
		accepted, rejected := 0, 0
		for _, e := range out.Record.Entries {
			if e.Weight != l.p.Weight() {
				t.Errorf("round %d: %s weighs %v, the config gives %v", r, e.Peer, e.Weight, l.p.Weight())
			}
			if e.Verdict == record.VerdictAccepted {
				accepted++
			} else {
				rejected++
				if verify.Kind(e.Reason) != verify.ReasonDuplicate {
					t.Errorf("round %d: %s rejected: %s", r, e.Peer, e.Reason)
				}
			}
		}
		if accepted == 0 || rejected != 1 {
			t.Errorf("round %d: %d accepted, %d rejected; want the copier alone rejected", r, accepted, rejected)
		}
		params, outer, err := Replay(l.p, st.Params, st.Outer, out.Record.Entries, func(c cid.Cid) ([]byte, error) {
			b, err := l.store.Get(ctx, c)
			if err != nil {
				return nil, err
			}
			return b.RawData(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		file, _ := CheckpointFile(l.p.Model, params)
		if fc, _ := storage.FileCID(file); !fc.Equals(out.Record.Model) {
			t.Fatalf("round %d: replay gives model %s, the seal %s", r, fc, out.Record.Model)
		}
		st.Params, st.Outer = params, outer
	}
}

// TestRecheckNamesWhatItCannotReproduce re-signs a sealed record with one
// field changed at a time: each recheck fails, naming the round and what
// differs.
func TestRecheckNamesWhatItCannotReproduce(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		edit func(*record.RoundRecord)
		want string
	}{
		{"weight", func(r *record.RoundRecord) { r.Entries[0].Weight *= 100 }, "recorded weight"},
		{"score", func(r *record.RoundRecord) { r.Entries[1].Score += 0.25 }, "recorded score"},
		{"verdict", func(r *record.RoundRecord) {
			r.Entries[3].Verdict, r.Entries[3].Reason, r.Entries[3].Evidence = record.VerdictAccepted, "", ""
		}, "recorded accepted, rechecked rejected (duplicate"},
		{"model", func(r *record.RoundRecord) { r.Model = r.Base }, "recorded model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := sealLedger(t, 2, 3)
			l.resignHead(t, l.records[1], c.edit)
			_, err := Recheck(ctx, l.store)
			if err == nil || !strings.Contains(err.Error(), "(round 1)") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("recheck: %v; want an error naming round 1 and %q", err, c.want)
			}
		})
	}
}

// TestApplyHoldsANonFiniteStep: an aggregate that would overflow the model
// leaves base and outer state as they were, and Run records the round with
// the base model.
func TestApplyHoldsANonFiniteStep(t *testing.T) {
	p := ParamsOf(testSwarm())
	p.Aggregation = "mean"
	base, outer := []float32{1, 2}, []float32{0, 0}
	huge := []float32{3e38, -3e38}
	next, nextOuter, err := Apply(p, base, outer, []gradient.Update{{ID: "a", Vec: huge}, {ID: "b", Vec: huge}})
	if !errors.Is(err, ErrHeld) || next[0] != 1 || next[1] != 2 || nextOuter[0] != 0 {
		t.Fatalf("Apply: %v %v %v", next, nextOuter, err)
	}
}

// resignHead replaces the ledger's head with record head edited by edit and
// signed again by the coordinator: a ledger whose signatures all verify but
// whose contents the recheck must refuse.
func (l *ledger) resignHead(t *testing.T, head cid.Cid, edit func(*record.RoundRecord)) {
	t.Helper()
	ctx := context.Background()
	b, err := l.store.Get(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := record.OpenBlock[record.RoundRecord](b)
	if err != nil {
		t.Fatal(err)
	}
	edit(rec)
	rb, err := record.Sign(l.coordKey, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.store.Put(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if err := l.store.SetHead(ctx, "ledger", rb.Cid()); err != nil {
		t.Fatal(err)
	}
}

// genesis is where every sealed test ledger starts: a store of its own,
// the swarm's manifest over the initial model signed by a fresh
// coordinator key and set as the swarm head, and the two ways blocks and
// files get into the store.
type genesis struct {
	store    *storage.Store
	manifest *record.SwarmManifest
	coordKey crypto.PrivKey
	swarm    string
	put      func(blocks.Block)
	putFile  func([]byte) cid.Cid
}

func newGenesis(t *testing.T, sc *config.Swarm, initial []float32) genesis {
	t.Helper()
	ctx := context.Background()
	p := ParamsOf(sc)
	store, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	put := func(b blocks.Block) {
		if err := store.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	putFile := func(f []byte) cid.Cid {
		// The same DAG the exchange builds (storage.FileCID is its CID).
		c, err := storage.FileCID(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := store.AddFile(ctx, f)
		if err != nil || !got.Equals(c) {
			t.Fatalf("stored file %s (%v), FileCID %s", got, err, c)
		}
		return c
	}
	initFile, err := CheckpointFile(p.Model, initial)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := sc.Canonical()
	ck, cid0 := key(t)
	m := &record.SwarmManifest{Name: sc.Name, Config: canon, Coordinator: cid0.String(), Created: 1, InitialModel: putFile(initFile), Seed: int64(sc.Seed)}
	mb, err := record.Sign(ck, m)
	if err != nil {
		t.Fatal(err)
	}
	put(mb)
	if err := store.SetHead(ctx, "swarm", mb.Cid()); err != nil {
		t.Fatal(err)
	}
	return genesis{store: store, manifest: m, coordKey: ck, swarm: mb.Cid().String(), put: put, putFile: putFile}
}
