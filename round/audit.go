package round

import (
	"context"
	"fmt"
	"math"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Auditor gives RunWith the tier-3 evidence of a round's audits. The sealer
// recomputes (DataAuditor); an observer without the data takes what the
// record says (Recheck), since RunWith draws the audits and applies the
// verdict rule itself.
type Auditor interface {
	// Size is how many contributions a round audits at most; 0 audits none.
	Size() int
	// Audit returns the evidence for every drawn peer.
	Audit(ctx context.Context, r AuditRound) (map[string]record.Audit, error)
}

// AuditRound is what the audits of one round are given.
type AuditRound struct {
	Round int64
	Seed  int64 // the round's shard seed and step seed
	Base  []float32
	// Drawn is the audited peers, in the order they were drawn.
	Drawn []string
	// Start is each drawn peer's committed start state; Prev the payload
	// of the contribution that ended in it (cid.Undef for the zero state),
	// whose magnitude bounds the residual (CheckStart).
	Start, Prev map[string]cid.Cid
	// Density is each drawn peer's assigned density (Params.DensityFor):
	// its work is replayed at it.
	Density map[string]float64
}

// ReplayWork is tier 3's recomputation: a contributor's local work redone
// from its committed start state on the round's public inputs (base model,
// shard, step seed). model is scratch space at the swarm's batch size. It
// returns the payload the work gives and the state it ends in; on the same
// build they are bit for bit the contributor's.
func ReplayWork(ctx context.Context, p Params, model train.Model, base []float32, shard *data.Set, seed uint64, start []float32) ([]byte, []float32, error) {
	w, err := NewWorker(p, model)
	if err != nil {
		return nil, nil, err
	}
	if err := w.SetState(start); err != nil {
		return nil, nil, err
	}
	payload, _, _, err := w.Work(ctx, base, shard, seed)
	if err != nil {
		return nil, nil, err
	}
	return payload, w.State(), nil
}

// adamMomentBound bounds |m| by sqrt(v) for Adam from a zero state: by
// Cauchy-Schwarz over the gradients, m² ≤ v·(1−β1)²/((1−β2)(1−β1²/β2)),
// 7.27² for β1 = 0.9, β2 = 0.999. A start state outside it was not reached
// by any sequence of gradients.
func adamMomentBound(b1, b2 float64) float64 {
	if b1*b1 >= b2 {
		return math.Inf(1)
	}
	return (1 - b1) / math.Sqrt((1-b2)*(1-b1*b1/b2))
}

// CheckStart bounds a committed start state, so that a peer cannot launder
// an arbitrary update through an honest replay by fabricating its state:
// every value finite; the residual no larger, coordinate by coordinate,
// than the largest value of the payload whose compression left it (prev,
// decoded; nil for the zero state, which must then be all zeros: what is
// dropped is at most the top-k threshold, and what is kept errs by less
// than its quantisation step); Adam's second moments non-negative and its
// first within adamMomentBound of their root.
func CheckStart(p Params, n int, start, prev []float32) error {
	for i, x := range start {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("value %d is %v", i, x)
		}
	}
	rest := start
	if p.ErrorFeedback && len(start) < n {
		return fmt.Errorf("%d values, the residual alone has %d", len(start), n)
	}
	if p.ErrorFeedback {
		bound := float32(0)
		for _, x := range prev {
			bound = max(bound, abs32(x))
		}
		bound *= 1.01
		for i, e := range start[:n] {
			if abs32(e) > bound {
				return fmt.Errorf("residual %d is %g, above the bound %g its previous payload sets", i, e, bound)
			}
		}
		rest = start[n:]
	}
	if p.Inner.Name == "adam" && len(rest) == 2*n+1 {
		m, v := rest[:n], rest[n:2*n]
		c := adamMomentBound(p.Inner.Beta1, p.Inner.Beta2) * 1.001
		for i := range n {
			if v[i] < 0 {
				return fmt.Errorf("adam second moment %d is negative (%g)", i, v[i])
			}
			if float64(abs32(m[i])) > c*math.Sqrt(float64(v[i]))+1e-30 {
				return fmt.Errorf("adam first moment %d (%g) exceeds %.2f x the root of its second (%g)", i, m[i], c, v[i])
			}
		}
	}
	return nil
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

// DataAuditor audits on the training set: it fetches each drawn peer's
// start state and previous payload (Blocks: the store, or bitswap through
// it), checks the state's bounds and replays the work.
type DataAuditor struct {
	P     Params
	Model train.Model // scratch, at the swarm's batch size
	Train *data.Set
	// File reads a file (a state) by CID; Payload a payload block.
	File    func(ctx context.Context, c cid.Cid) ([]byte, error)
	Payload func(ctx context.Context, c cid.Cid) ([]byte, error)
	Audits  int
}

// Size is Audits, or 0 without the data.
func (d *DataAuditor) Size() int {
	if d == nil || d.Train == nil || d.Model == nil {
		return 0
	}
	return d.Audits
}

// Audit replays every drawn peer's work. A state it cannot get or that
// breaks its bounds is the peer's fault (it must serve what it commits to).
func (d *DataAuditor) Audit(ctx context.Context, r AuditRound) (map[string]record.Audit, error) {
	n := len(r.Base)
	k, err := d.P.StateLen(n)
	if err != nil {
		return nil, err
	}
	out := map[string]record.Audit{}
	for _, peer := range r.Drawn {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a := record.Audit{Start: r.Start[peer]}
		start, prev, fault := d.inputs(ctx, r, peer, n, k)
		if fault == "" {
			if err := CheckStart(d.P, n, start, prev); err != nil {
				fault = "start state out of bounds: " + err.Error()
			}
		}
		if fault != "" {
			a.Fault = fault
			out[peer] = a
			continue
		}
		shard := Shard(d.Train, r.Seed, peer, d.P.ShardSize)
		p := d.P
		if dp, ok := r.Density[peer]; ok {
			p.Density = dp
		}
		payload, end, err := ReplayWork(ctx, p, d.Model, r.Base, shard, uint64(r.Seed), start)
		if err != nil {
			a.Fault = "replay failed: " + err.Error()
			out[peer] = a
			continue
		}
		pc, err := verify.PayloadCID(payload)
		if err != nil {
			return nil, err
		}
		ec, err := StateCID(end)
		if err != nil {
			return nil, err
		}
		a.Payload, a.End = &pc, &ec
		out[peer] = a
	}
	return out, nil
}

func (d *DataAuditor) inputs(ctx context.Context, r AuditRound, peer string, n, k int) (start, prev []float32, fault string) {
	file, err := d.File(ctx, r.Start[peer])
	if err != nil {
		return nil, nil, fmt.Sprintf("start state %s unavailable: %v", r.Start[peer], err)
	}
	if start, err = StateOf(file, k); err != nil {
		return nil, nil, fmt.Sprintf("start state %s: %v", r.Start[peer], err)
	}
	if pc := r.Prev[peer]; pc.Defined() {
		b, err := d.Payload(ctx, pc)
		if err != nil {
			return nil, nil, fmt.Sprintf("previous payload %s unavailable: %v", pc, err)
		}
		if prev, err = verify.DecodePayload(b, n); err != nil {
			return nil, nil, fmt.Sprintf("previous payload %s: %v", pc, err)
		}
	}
	return start, prev, ""
}

// StateCID is the CID a worker state is committed to.
func StateCID(s []float32) (cid.Cid, error) {
	f, err := StateFile(s)
	if err != nil {
		return cid.Undef, err
	}
	return storage.FileCID(f)
}

// recordedAudit is the audit evidence a sealed record carries.
type recordedAudit struct {
	rec *record.RoundRecord
}

func (r recordedAudit) Size() int {
	if r.rec.AuditSize == nil {
		return 0
	}
	return int(*r.rec.AuditSize)
}

func (r recordedAudit) Audit(_ context.Context, ar AuditRound) (map[string]record.Audit, error) {
	out := map[string]record.Audit{}
	for _, e := range r.rec.Entries {
		if e.Audit != nil {
			out[e.Peer] = *e.Audit
		}
	}
	for _, p := range ar.Drawn {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("the record has no audit of %s, which the draw picks", p)
		}
	}
	if len(out) != len(ar.Drawn) {
		return nil, fmt.Errorf("the record audits %d peers, the draw picks %d", len(out), len(ar.Drawn))
	}
	return out, nil
}
