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
	// Sent is each drawn peer's decoded update and End the end state it
	// committed to: what the replay is measured against.
	Sent map[string][]float32
	End  map[string]cid.Cid
}

// DefaultAuditTolerance is the relative L2 distance within which a replay
// passes. Measured (benchmarks/attacks -margins-write/-margins-read, MNIST
// MLP, 1 % top-k int8, Adam): the same inputs on OpenBLAS and pure Go give
// payloads at most 1.3e-7 apart, while the closest attack lands 0.94 from
// the replay of its own committed state. 0.01 sits about five orders above
// the honest drift and two below the closest attack, and leaves room for
// a GPU's reordered sums and a top-k that picks another coordinate on a
// near tie (a few of 1 % of coordinates swapped moves the payload by well
// under 1 %).
const DefaultAuditTolerance = 0.01

// AuditTol is the swarm's audit tolerance: AuditTolerance, or the default.
func (p Params) AuditTol() float64 {
	if p.AuditTolerance > 0 {
		return p.AuditTolerance
	}
	return DefaultAuditTolerance
}

// RelativeL2 is |got − want| / |want|: how far a claimed vector (got) lies
// from the replay (want). 0 when both are zero, +Inf when only want is.
func RelativeL2(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	return relativeL2Skipping(got, want, nil)
}

// PayloadDistance is how far a sent update lies from the replay's, both
// decoded: RelativeL2, except on the coordinates Ties excuses.
func PayloadDistance(sent, replayed, dense []float32, tol float64) float64 {
	if len(sent) != len(replayed) || len(dense) != len(replayed) {
		return math.Inf(1)
	}
	return relativeL2Skipping(sent, replayed, Ties(sent, replayed, dense, tol))
}

// Ties marks the coordinates one side kept and the other dropped that are
// near ties of top-k: the replay's uncompressed value (dense) within tol
// of the smallest value the replay kept, and what was sent there 0 or of
// the value's sign and at most twice its size. Another build's rounding
// may break such a tie the other way, and one swapped coordinate of the
// ~1000 a 1 % top-k keeps moves the payload by about sqrt(2/1000) =
// 0.045, above the tolerance (and the residual with it). What a cheat
// gains from the excuse: keeping or dropping coordinates that sit within
// tol of the threshold, in the honest direction.
func Ties(sent, replayed, dense []float32, tol float64) []bool {
	thr := math.Inf(1)
	for i, x := range replayed {
		if x != 0 {
			thr = min(thr, math.Abs(float64(dense[i])))
		}
	}
	ties := make([]bool, len(replayed))
	for i, x := range replayed {
		y, u := float64(sent[i]), float64(dense[i])
		if (x == 0) == (y == 0) {
			continue
		}
		a := math.Abs(u)
		near := a >= thr*(1-tol) && a <= thr*(1+tol)
		ties[i] = near && (y == 0 || (y*u > 0 && math.Abs(y) <= 2*a))
	}
	return ties
}

func relativeL2Skipping(got, want []float32, skip []bool) float64 {
	var d, w float64
	for i, x := range want {
		w += float64(x) * float64(x)
		if skip != nil && skip[i] {
			continue
		}
		e := float64(got[i]) - float64(x)
		d += e * e
	}
	switch {
	case d == 0:
		return 0
	case w == 0:
		return math.Inf(1)
	}
	return math.Sqrt(d / w)
}

// StateDistance is how far a committed worker state lies from the
// replay's: the largest RelativeL2 over its parts of n values (the
// residual, each optimizer vector, then the rest, e.g. Adam's step
// count), so that a small part — the residual next to Adam's moments —
// cannot hide a fabrication in the slack of a large one. ties (nil: none)
// are the residual's coordinates a top-k tie moved (Ties), skipped.
func StateDistance(got, want []float32, n int, ties []bool) float64 {
	if len(got) != len(want) || n <= 0 || (ties != nil && len(ties) != n) {
		return math.Inf(1)
	}
	var d float64
	for i := 0; i < len(want); i += n {
		j := min(i+n, len(want))
		var skip []bool
		if i == 0 {
			skip = ties
		}
		d = max(d, relativeL2Skipping(got[i:j], want[i:j], skip))
	}
	return d
}

// recordable keeps a distance encodable (IPLD floats are finite): +Inf
// and NaN are recorded as the largest float64, beyond any tolerance.
func recordable(d float64) *float64 {
	if math.IsNaN(d) || math.IsInf(d, 0) {
		d = math.MaxFloat64
	}
	return &d
}

// passed is the verdict rule of one audit: no fault, and the payload and
// end state within tol of the replay. A record sealed before distances
// were recorded passes on equal CIDs.
func passed(a record.Audit, payload, end cid.Cid, tol float64) bool {
	if a.Fault != "" {
		return false
	}
	if a.PayloadDistance == nil || a.EndDistance == nil {
		return a.Payload != nil && a.Payload.Equals(payload) && a.End != nil && a.End.Equals(end)
	}
	return *a.PayloadDistance <= tol && *a.EndDistance <= tol
}

// ReplayWork is tier 3's recomputation: a contributor's local work redone
// from its committed start state on the round's public inputs (base model,
// shard, step seed). model is scratch space at the swarm's batch size. It
// returns the payload the work gives, the state it ends in and the update
// before compression (residual included: what top-k chose from); on the
// same build they are bit for bit the contributor's.
func ReplayWork(ctx context.Context, p Params, model train.Model, base []float32, shard *data.Set, seed uint64, start []float32) (payload []byte, end, dense []float32, err error) {
	w, err := NewWorker(p, model)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := w.SetState(start); err != nil {
		return nil, nil, nil, err
	}
	payload, dense, _, err = w.Work(ctx, base, shard, seed)
	if err != nil {
		return nil, nil, nil, err
	}
	return payload, w.State(), dense, nil
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
		payload, end, dense, err := ReplayWork(ctx, p, d.Model, r.Base, shard, uint64(r.Seed), start)
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
		// Measured, not compared by CID: the auditor may run another build
		// (OpenBLAS, a GPU) than the contributor.
		replayed, err := verify.DecodePayload(payload, n)
		if err != nil {
			return nil, fmt.Errorf("round %d: the replay of %s does not decode: %w", r.Round, peer, err)
		}
		sent := r.Sent[peer]
		if len(sent) != n {
			return nil, fmt.Errorf("round %d: %s's decoded update has %d values, the model %d", r.Round, peer, len(sent), n)
		}
		ties := Ties(sent, replayed, dense, d.P.AuditTol())
		a.PayloadDistance = recordable(relativeL2Skipping(sent, replayed, ties))
		if !d.P.ErrorFeedback {
			ties = nil // no residual for a tie to move
		}
		if claimed := r.End[peer]; claimed.Equals(ec) {
			a.EndDistance = recordable(0)
		} else if fault := d.endDistance(ctx, &a, claimed, end, ties, n, k); fault != "" {
			a.Fault = fault
		}
		out[peer] = a
	}
	return out, nil
}

// endDistance fetches the end state a peer committed to and measures it
// against the replay's, so that a peer whose state differs from its work
// by more than the tolerance cannot carry a fabricated residual into its
// next start (which the chain then accepts exactly).
func (d *DataAuditor) endDistance(ctx context.Context, a *record.Audit, claimed cid.Cid, end []float32, ties []bool, n, k int) string {
	file, err := d.File(ctx, claimed)
	if err != nil {
		return fmt.Sprintf("end state %s unavailable: %v", claimed, err)
	}
	got, err := StateOf(file, k)
	if err != nil {
		return fmt.Sprintf("end state %s: %v", claimed, err)
	}
	a.EndDistance = recordable(StateDistance(got, end, n, ties))
	return ""
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
