package main

import (
	"context"

	"fmt"
	"github.com/ipfs/go-cid"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// env is what every run of the suite shares: the swarm's params (from a
// swarm config, as a real swarm derives them) and the data.
type env struct {
	sc          *config.Swarm
	p           round.Params
	train, test *data.Set
	rounds      int
	honest      int
	// margins, when set, measures how far each adversarial payload is
	// from what an honest replay of its committed state gives (relative
	// L2 distance), and dumps honest-0's replay inputs for a cross-build
	// comparison (margins.go).
	margins *margins
}

// states is every worker state a peer committed to, by CID: in a swarm
// each peer serves its own over bitswap; here the auditor reads them.
type states map[string][]byte

func (s states) put(v []float32) (*cid.Cid, error) {
	f, err := round.StateFile(v)
	if err != nil {
		return nil, err
	}
	c, err := storage.FileCID(f)
	if err != nil {
		return nil, err
	}
	s[c.KeyString()] = f
	return &c, nil
}

func (s states) get(_ context.Context, c cid.Cid) ([]byte, error) {
	if f, ok := s[c.KeyString()]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%s: not served", c)
}

// result is one run: one attack class (or none) and one seed.
type result struct {
	Class          string             `json:"class"`
	Seed           int64              `json:"seed"`
	Rounds         int                `json:"rounds"`
	Adversaries    int                `json:"adversaries"`
	AdvUpdates     int                `json:"adversarial_updates"`
	AdvAccepted    int                `json:"adversarial_accepted"`
	KeptOut        float64            `json:"kept_out_pct"`
	HonestRejected int                `json:"honest_rejected"`
	HonestFailed   int                `json:"honest_failed"` // local work that errored (a diverged model)
	Held           int                `json:"held_rounds"`   // rounds the seal kept its base
	WrongWeights   int                `json:"wrong_weights"` // accepted entries not weighing Params.Weight
	Accuracy       float64            `json:"accuracy"`
	HonestOnly     float64            `json:"honest_only_accuracy"`
	Delta          float64            `json:"accuracy_delta_pt"`
	Scores         map[string]float64 `json:"scores"`
	MinHonest      float64            `json:"min_honest_score"`
	MaxAdversary   float64            `json:"max_adversary_score"`
	Separated      bool               `json:"every_adversary_below_every_honest"`
	Rejections     map[string]int     `json:"adversary_rejections"` // by reason kind
	Audits         int                `json:"audits"`
	// The largest cosine between two honest updates of one round, and
	// between two adversaries' (round.CollusionCosine sits between).
	HonestCosine float64 `json:"max_honest_cosine"`
	AdvCosine    float64 `json:"max_adversary_cosine"`
	HonestWork   float64 `json:"honest_work_s"` // summed local work of the honest peers
	AuditTime    float64 `json:"audit_s"`       // summed tier-3 replays (the coordinator's audits and referees)
	// With -peer-audits: the honest peers' signed verdicts, their summed
	// replays, and the verdicts the coordinator refereed.
	PeerVerdicts  int     `json:"peer_verdicts"`
	PeerAuditTime float64 `json:"peer_audit_s"`
	Refereed      int     `json:"refereed"`
	Elapsed       string  `json:"elapsed"`
}

// peer is one participant: an honest worker or an adversary.
type peer struct {
	id     string
	worker *round.Worker
	model  train.Model
	adv    adversary // nil: honest
}

// roundView is what an adversary sees when it builds its update: the
// round's state, and the honest updates already published this round (on
// gossip they are public before the round closes; the suite lets every
// adversary see them, the strongest position).
type roundView struct {
	st     round.State
	honest [][]float32 // decoded honest payloads
}

func newEnv(rounds, honest, audits, exclude int, trainSet, testSet *data.Set) *env {
	sc := config.Default()
	sc.Train.Rounds = rounds
	sc.Verify.Audits, sc.Verify.ExcludeRounds = audits, exclude
	return &env{sc: sc, p: round.ParamsOf(sc), train: trainSet, test: testSet, rounds: rounds, honest: honest}
}

func (e *env) newPeer(id string, seed int64, p round.Params) (*peer, error) {
	m, err := train.New(p.Model, p.BatchSize, uint64(seed))
	if err != nil {
		return nil, err
	}
	w, err := round.NewWorker(p, m)
	if err != nil {
		return nil, err
	}
	return &peer{id: id, worker: w, model: m}, nil
}

// run runs one class (class "" is honest-only) for seed.
func (e *env) run(ctx context.Context, class string, seed int64) (result, error) {
	start := time.Now()
	res := result{Class: class, Seed: seed, Rounds: e.rounds, Scores: map[string]float64{}, Rejections: map[string]int{}}
	if class == "" {
		res.Class = "honest-only"
	}
	p := e.p
	global, err := train.New(p.Model, p.BatchSize, uint64(seed))
	if err != nil {
		return res, err
	}
	defer global.Close()
	var peers []*peer
	for i := range e.honest {
		h, err := e.newPeer(fmt.Sprintf("honest-%d", i), seed, p)
		if err != nil {
			return res, err
		}
		peers = append(peers, h)
	}
	if class != "" {
		mk, ok := classes[class]
		if !ok {
			return res, fmt.Errorf("-classes: unknown class %q (known: %v)", class, classNames())
		}
		advs, err := mk(e, seed)
		if err != nil {
			return res, err
		}
		peers = append(peers, advs...)
		res.Adversaries = len(advs)
	}
	defer func() {
		for _, q := range peers {
			q.model.Close()
		}
	}()
	scratch, err := train.New(p.Model, 500, uint64(seed))
	if err != nil {
		return res, err
	}
	defer scratch.Close()
	t2 := &round.DataTier2{Model: scratch, Train: e.train, Test: e.test, ShardSize: p.ShardSize, SampleSize: p.Tier2Sample}
	replayModel, err := train.New(p.Model, p.BatchSize, uint64(seed))
	if err != nil {
		return res, err
	}
	defer replayModel.Close()
	committed := states{}
	payloads := map[string][]byte{}
	payloadOf := func(_ context.Context, c cid.Cid) ([]byte, error) {
		if b, ok := payloads[c.KeyString()]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: not served", c)
	}
	auditor := &timedAuditor{a: &round.DataAuditor{P: p, Model: replayModel, Train: e.train, File: committed.get, Audits: p.Audits, Payload: payloadOf}}

	initial, err := round.CheckpointFile(p.Model, train.Snapshot(global))
	if err != nil {
		return res, err
	}
	initCID, err := storage.FileCID(initial)
	if err != nil {
		return res, err
	}
	st := round.Genesis(&record.SwarmManifest{InitialModel: initCID, Seed: seed}, train.Snapshot(global))
	isAdv := map[string]bool{}
	for _, q := range peers {
		isAdv[q.id] = q.adv != nil
	}
	for r := 0; r < e.rounds; r++ {
		var in []round.Contribution
		view := &roundView{st: st}
		add := func(q *peer, payload []byte, samples int64, loss float64, start, end []float32, verdict *record.PeerVerdict) error {
			pc, err := verify.PayloadCID(payload)
			if err != nil {
				return err
			}
			payloads[pc.KeyString()] = payload
			s := st.Seed
			c := &record.Contribution{Round: st.Round, Peer: q.id, Base: st.Base, Payload: pc, Codec: p.Codec,
				PayloadBytes: int64(len(payload)), Samples: samples, Loss: loss, Seed: &s, PeerAudit: verdict}
			if c.Start, err = committed.put(start); err != nil {
				return err
			}
			if c.End, err = committed.put(end); err != nil {
				return err
			}
			in = append(in, round.Contribution{Record: c, Block: pc, Payload: payload})
			return nil
		}
		for _, q := range peers {
			if q.adv != nil {
				continue
			}
			// Its peer audit first, with its own model as scratch (the
			// worker writes its parameters back before its work), as a
			// contributor does.
			var verdict *record.PeerVerdict
			if st.Last != nil {
				t0 := time.Now()
				verdict, err = round.PeerAudit(ctx, &round.DataAuditor{P: p, Model: q.model, Train: e.train, File: committed.get, Payload: payloadOf, Audits: 1}, st.Last, q.id)
				res.PeerAuditTime += time.Since(t0).Seconds()
				if err != nil {
					return res, err
				}
				if verdict != nil {
					res.PeerVerdicts++
				}
			}
			shard := round.Shard(e.train, st.Seed, q.id, p.ShardSize)
			start := q.worker.State()
			if e.margins != nil && q.id == "honest-0" && class == "" {
				if err := e.margins.dump(r, st.Params, start); err != nil {
					return res, err
				}
			}
			t0 := time.Now()
			payload, _, stats, err := q.worker.Work(ctx, st.Params, shard, uint64(st.Seed))
			res.HonestWork += time.Since(t0).Seconds()
			if err != nil {
				res.HonestFailed++
				continue
			}
			if e.margins != nil && q.id == "honest-0" && class == "" {
				if err := e.margins.dumpPayload(r, payload, st.Seed, q.worker.State()); err != nil {
					return res, err
				}
			}
			vec, err := verify.DecodePayload(payload, len(st.Params))
			if err != nil {
				return res, err
			}
			view.honest = append(view.honest, vec)
			if err := add(q, payload, int64(stats.Samples), stats.MeanLoss, start, q.worker.State(), verdict); err != nil {
				return res, err
			}
		}
		for _, q := range peers {
			if q.adv == nil {
				continue
			}
			// An adversary commits to its worker's real states: the best
			// it can do, since the chain pins its start and a replay
			// from any start state gives an honest update, never its own.
			start := q.worker.State()
			payload, samples, err := q.adv.update(ctx, e, q, view)
			if err != nil {
				return res, fmt.Errorf("%s %s round %d: %w", class, q.id, r, err)
			}
			if e.margins != nil {
				if err := e.margins.attack(ctx, e, class, replayModel, st, q.id, start, payload); err != nil {
					return res, err
				}
			}
			if err := add(q, payload, samples, 0.3, start, q.worker.State(), nil); err != nil {
				return res, err
			}
		}
		cosines(&res, in, isAdv, len(st.Params))
		out, err := round.RunWith(ctx, p, st, in, round.Checks{Tier2: t2, Audit: auditor, Referee: auditor})
		if err != nil {
			return res, err
		}
		if out.Held != "" {
			res.Held++
		}
		for _, en := range out.Record.Entries {
			if en.Audit != nil {
				res.Audits++
			}
			if en.Referee != nil {
				res.Refereed++
			}
			accepted := en.Verdict == record.VerdictAccepted
			if accepted && en.Weight != p.Weight() {
				res.WrongWeights++
			}
			if isAdv[en.Peer] {
				res.AdvUpdates++
				if accepted {
					res.AdvAccepted++
				} else {
					res.Rejections[verify.Kind(en.Reason)]++
				}
			} else if !accepted {
				res.HonestRejected++
			}
		}
		st = out.Next
	}
	if err := global.WriteParams(st.Params); err != nil {
		return res, err
	}
	_, acc, err := global.Evaluate(e.test)
	if err != nil {
		return res, err
	}
	res.Accuracy = 100 * acc
	res.MinHonest, res.MaxAdversary = math.Inf(1), math.Inf(-1)
	for _, id := range slices.Sorted(maps.Keys(st.Scores)) {
		s := st.Scores[id].Score
		res.Scores[id] = s
		if isAdv[id] {
			res.MaxAdversary = max(res.MaxAdversary, s)
		} else {
			res.MinHonest = min(res.MinHonest, s)
		}
	}
	for _, q := range peers {
		if _, ok := st.Scores[q.id]; !ok && !isAdv[q.id] {
			res.MinHonest = min(res.MinHonest, 0)
		}
	}
	if res.AdvUpdates > 0 {
		res.KeptOut = 100 * float64(res.AdvUpdates-res.AdvAccepted) / float64(res.AdvUpdates)
		res.Separated = res.MaxAdversary < res.MinHonest
	} else {
		res.MaxAdversary = 0
	}
	res.AuditTime = auditor.spent.Seconds()
	res.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return res, nil
}

// encode compresses v with the swarm's codec, as an honest peer's payload is.
func encode(p round.Params, v []float32) ([]byte, error) {
	c, err := gradient.NewCodec(p.Codec, p.Density)
	if err != nil {
		return nil, err
	}
	return gradient.Marshal(c, v)
}

// timedAuditor measures what the audits cost.
type timedAuditor struct {
	a     round.Auditor
	spent time.Duration
}

func (t *timedAuditor) Size() int { return t.a.Size() }

func (t *timedAuditor) Audit(ctx context.Context, r round.AuditRound) (map[string]record.Audit, error) {
	t0 := time.Now()
	defer func() { t.spent += time.Since(t0) }()
	return t.a.Audit(ctx, r)
}

// cosines records the largest pairwise cosine among honest and among
// adversarial updates of a round.
func cosines(res *result, in []round.Contribution, isAdv map[string]bool, n int) {
	vecs := make([][]float32, len(in))
	for i, c := range in {
		vecs[i], _ = verify.DecodePayload(c.Payload, n)
	}
	for i := range in {
		for j := i + 1; j < len(in); j++ {
			a, b := in[i].Record.Peer, in[j].Record.Peer
			if vecs[i] == nil || vecs[j] == nil || isAdv[a] != isAdv[b] {
				continue
			}
			var ab, aa, bb float64
			for k, x := range vecs[i] {
				y := vecs[j][k]
				ab += float64(x) * float64(y)
				aa += float64(x) * float64(x)
				bb += float64(y) * float64(y)
			}
			c := ab / math.Sqrt(aa*bb)
			if isAdv[a] {
				res.AdvCosine = max(res.AdvCosine, c)
			} else {
				res.HonestCosine = max(res.HonestCosine, c)
			}
		}
	}
}
