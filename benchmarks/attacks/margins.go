package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/verify"
)

// margins measures what a cross-build audit tolerance must sit between:
// how far an honest replay on another build (OpenBLAS against pure Go)
// lands from the contributor's payload, and how far each attack's payload
// is from the honest replay of its own committed state. Distances are the
// audit's own (round.PayloadDistance): ‖a − b‖ / ‖b‖ over the decoded
// payloads, b the replay, with top-k's near ties excused.
type margins struct {
	dir    string
	attack func(ctx context.Context, e *env, class string, model train.Model, st round.State, peer string, start []float32, payload []byte) error
	worst  map[string]float64 // per class, the smallest distance seen
}

func newMargins(dir string) *margins {
	m := &margins{dir: dir, worst: map[string]float64{}}
	m.attack = m.measure
	return m
}

// dump saves honest-0's inputs of round r: base model and start state.
func (m *margins) dump(r int, base, start []float32) error {
	for name, v := range map[string][]float32{"base": base, "start": start} {
		f, err := round.VectorFile(name, v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(m.dir, fmt.Sprintf("r%02d-%s.safetensors", r, name)), f, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dumpPayload saves honest-0's payload, the round's seed and the state
// the work ended in.
func (m *margins) dumpPayload(r int, payload []byte, seed int64, end []float32) error {
	if err := os.WriteFile(filepath.Join(m.dir, fmt.Sprintf("r%02d-payload.bin", r)), payload, 0o644); err != nil {
		return err
	}
	f, err := round.VectorFile("end", end)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m.dir, fmt.Sprintf("r%02d-end.safetensors", r)), f, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.dir, fmt.Sprintf("r%02d-seed.txt", r)), fmt.Appendf(nil, "%d", seed), 0o644)
}

func (m *margins) measure(ctx context.Context, e *env, class string, model train.Model, st round.State, peer string, start []float32, payload []byte) error {
	shard := round.Shard(e.train, st.Seed, peer, e.p.ShardSize)
	replay, _, dense, err := round.ReplayWork(ctx, e.p, model, st.Params, shard, uint64(st.Seed), start)
	if err != nil {
		return err
	}
	d, err := distance(e.p, payload, replay, dense)
	if err != nil {
		return err
	}
	if w, ok := m.worst[class]; !ok || d < w {
		m.worst[class] = d
	}
	return nil
}

// distance is the audit's distance of payload a from the replay b, whose
// update before compression is dense.
func distance(p round.Params, a, b []byte, dense []float32) (float64, error) {
	va, err := verify.DecodePayload(a, len(dense))
	if err != nil {
		return 0, err
	}
	vb, err := verify.DecodePayload(b, len(dense))
	if err != nil {
		return 0, err
	}
	return round.PayloadDistance(va, vb, dense, p.AuditTol()), nil
}

// crossBuild replays, with this build, every round of honest-0's work that
// another build dumped (-margins-write) from the same base and start
// state, and prints how far this build's payload is from that build's.
func crossBuild(ctx context.Context, e *env, dir string, rounds int) error {
	n, err := e.p.NumParams()
	if err != nil {
		return err
	}
	k, err := e.p.StateLen(n)
	if err != nil {
		return err
	}
	model, err := train.New(e.p.Model, e.p.BatchSize, 1)
	if err != nil {
		return err
	}
	defer model.Close()
	worst, worstEnd := 0.0, 0.0
	for r := range rounds {
		read := func(name string, want int) ([]float32, error) {
			f, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("r%02d-%s.safetensors", r, name)))
			if err != nil {
				return nil, err
			}
			return round.NamedVector(f, name, want)
		}
		base, err := read("base", n)
		if err != nil {
			return err
		}
		start, err := read("start", k)
		if err != nil {
			return err
		}
		theirs, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("r%02d-payload.bin", r)))
		if err != nil {
			return err
		}
		seed, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("r%02d-seed.txt", r)))
		if err != nil {
			return err
		}
		var s int64
		if _, err := fmt.Sscan(string(seed), &s); err != nil {
			return err
		}
		shard := round.Shard(e.train, s, "honest-0", e.p.ShardSize)
		mine, mineEnd, dense, err := round.ReplayWork(ctx, e.p, model, base, shard, uint64(s), start)
		if err != nil {
			return err
		}
		d, err := distance(e.p, theirs, mine, dense)
		if err != nil {
			return err
		}
		theirsEnd, err := read("end", k)
		if err != nil {
			return err
		}
		// The end state as the audit measures it: per part, the residual's
		// top-k ties skipped.
		sent, err := verify.DecodePayload(theirs, n)
		if err != nil {
			return err
		}
		replayed, err := verify.DecodePayload(mine, n)
		if err != nil {
			return err
		}
		var ties []bool
		if e.p.ErrorFeedback {
			ties = round.Ties(sent, replayed, dense, e.p.AuditTol())
		}
		de := round.StateDistance(theirsEnd, mineEnd, n, ties)
		worst, worstEnd = max(worst, d), max(worstEnd, de)
		fmt.Printf("round %2d: this build's replay is %.3g from the dumped payload, %.3g from its end state (identical bytes: %v)\n", r, d, de, string(mine) == string(theirs))
	}
	fmt.Printf("honest cross-build distance, worst of %d rounds: payload %.3g, end state %.3g (%s)\n", rounds, worst, worstEnd, train.BLAS())
	return nil
}
