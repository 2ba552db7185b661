package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// An adversary builds its update for a round. It follows the protocol in
// everything but the update (and, for inflate, the samples it claims):
// attackers live here, in the benchmark, never in production code.
type adversary interface {
	update(ctx context.Context, e *env, q *peer, v *roundView) (payload []byte, samples int64, err error)
}

// classes maps each attack class to a constructor of its adversaries.
var classes = map[string]func(e *env, seed int64) ([]*peer, error){
	// inflate: sign-flips its update and claims 100x the samples it
	// trained on (the attack that once held 92 % of the aggregate).
	"inflate": pair(func(int) adversary { return &flipper{scale: -1, claim: 100} }),
	// signflip: trains honestly and sends the negated update.
	"signflip": pair(func(int) adversary { return &flipper{scale: -1, claim: 1} }),
	// scaled: the negated update scaled 4x (under tier 1's 10x norm bound).
	"scaled": pair(func(int) adversary { return &flipper{scale: -4, claim: 1} }),
	// labelflip: trains on its shard with every label y replaced by 9-y.
	"labelflip": pair(func(int) adversary { return &relabeler{relabel: func(y uint8) uint8 { return 9 - y }} }),
	// backdoor: trains on its shard with every 7 labelled 1.
	"backdoor": pair(func(int) adversary {
		return &relabeler{relabel: func(y uint8) uint8 {
			if y == 7 {
				return 1
			}
			return y
		}}
	}),
	// sybil: three peers send one direction (the negated mean of the
	// honest updates), each with its own small perturbation and support.
	"sybil": sybils,
	// alie: "a little is enough" (Baruch et al. 2019): each coordinate of
	// the honest mean moved by one standard deviation against its sign.
	"alie": pair(func(i int) adversary { return &alie{z: 1 + 0.1*float64(i), salt: uint64(i)} }),
	// lazy-steps: one inner step instead of inner_steps.
	"lazy-steps": lazySteps,
	// lazy-subset: inner_steps on one batch of its shard, over and over.
	"lazy-subset": pair(func(int) adversary { return &subset{} }),
}

func classNames() []string { return slices.Sorted(maps.Keys(classes)) }

// pair makes two adversaries of one kind.
func pair(mk func(i int) adversary) func(e *env, seed int64) ([]*peer, error) {
	return func(e *env, seed int64) ([]*peer, error) {
		var out []*peer
		for i := range 2 {
			q, err := e.newPeer(fmt.Sprintf("adv-%d", i), seed, e.p)
			if err != nil {
				return nil, err
			}
			q.adv = mk(i)
			out = append(out, q)
		}
		return out, nil
	}
}

// flipper does the honest work and sends scale x its update, claiming claim
// x the samples it trained on.
type flipper struct {
	scale float32
	claim int64
}

func (f *flipper) update(ctx context.Context, e *env, q *peer, v *roundView) ([]byte, int64, error) {
	shard := shardOf(e, v, q)
	payload, _, stats, err := q.worker.Work(ctx, v.st.Params, shard, uint64(v.st.Seed))
	if err != nil {
		return nil, 0, err
	}
	vec, err := verify.DecodePayload(payload, len(v.st.Params))
	if err != nil {
		return nil, 0, err
	}
	for i := range vec {
		vec[i] *= f.scale
	}
	b, err := encode(e.p, vec)
	return b, f.claim * int64(stats.Samples), err
}

func shardOf(e *env, v *roundView, q *peer) *data.Set {
	return e.train.Subset(data.Assign(uint64(v.st.Seed), q.id, e.train.N, e.p.ShardSize))
}

// relabeler trains on its own shard with its labels changed.
type relabeler struct {
	relabel func(uint8) uint8
}

func (r *relabeler) update(ctx context.Context, e *env, q *peer, v *roundView) ([]byte, int64, error) {
	shard := shardOf(e, v, q)
	for i, y := range shard.Y {
		shard.Y[i] = r.relabel(y)
	}
	payload, _, stats, err := q.worker.Work(ctx, v.st.Params, shard, uint64(v.st.Seed))
	return payload, int64(stats.Samples), err
}

// subset trains inner_steps on its shard's first batch only.
type subset struct{}

func (subset) update(ctx context.Context, e *env, q *peer, v *roundView) ([]byte, int64, error) {
	shard := shardOf(e, v, q).Head(e.p.BatchSize)
	payload, _, _, err := q.worker.Work(ctx, v.st.Params, shard, uint64(v.st.Seed))
	return payload, int64(e.p.Weight()), err
}

// lazySteps are two peers whose worker runs one inner step and claims the
// round's worth.
func lazySteps(e *env, seed int64) ([]*peer, error) {
	p := e.p
	p.InnerSteps = 1
	var out []*peer
	for i := range 2 {
		q, err := e.newPeer(fmt.Sprintf("adv-%d", i), seed, p)
		if err != nil {
			return nil, err
		}
		q.adv = lazy{}
		out = append(out, q)
	}
	return out, nil
}

type lazy struct{}

func (lazy) update(ctx context.Context, e *env, q *peer, v *roundView) ([]byte, int64, error) {
	payload, _, _, err := q.worker.Work(ctx, v.st.Params, shardOf(e, v, q), uint64(v.st.Seed))
	return payload, int64(e.p.Weight()), err
}

// sybils are three peers sharing one direction: the negated mean of the
// round's honest updates, each with a perturbation of its own (5 % noise
// and a third of the coordinates dropped at random), so their supports
// differ as much as honest peers' do.
func sybils(e *env, seed int64) ([]*peer, error) {
	var out []*peer
	for i := range 3 {
		q, err := e.newPeer(fmt.Sprintf("adv-%d", i), seed, e.p)
		if err != nil {
			return nil, err
		}
		q.adv = &sybil{salt: uint64(i)}
		out = append(out, q)
	}
	return out, nil
}

type sybil struct{ salt uint64 }

func (s *sybil) update(_ context.Context, e *env, _ *peer, v *roundView) ([]byte, int64, error) {
	mean, _ := moments(v.honest)
	r := data.Rand(uint64(v.st.Seed)*31 + s.salt)
	rms := 0.0
	for _, x := range mean {
		rms += float64(x) * float64(x)
	}
	rms = math.Sqrt(rms / float64(len(mean)))
	vec := make([]float32, len(mean))
	for i, m := range mean {
		if r.Float64() < 1.0/3 {
			continue
		}
		vec[i] = -m + float32(0.05*rms*r.NormFloat64())
	}
	b, err := encode(e.p, vec)
	return b, int64(e.p.Weight()), err
}

// alie sends mean − z·std·sign(mean) of the honest updates, per coordinate,
// with a random third of the coordinates dropped (so two ALIE peers are
// not duplicates of each other).
type alie struct {
	z    float64
	salt uint64
}

func (a *alie) update(_ context.Context, e *env, _ *peer, v *roundView) ([]byte, int64, error) {
	mean, std := moments(v.honest)
	r := data.Rand(uint64(v.st.Seed)*37 + a.salt)
	vec := make([]float32, len(mean))
	for i, m := range mean {
		if r.Float64() < 1.0/3 {
			continue
		}
		s := float32(a.z) * std[i]
		if m < 0 {
			s = -s
		}
		vec[i] = m - s
	}
	b, err := encode(e.p, vec)
	return b, int64(e.p.Weight()), err
}

// moments are the per-coordinate mean and standard deviation of vs.
func moments(vs [][]float32) (mean, std []float32) {
	n := len(vs[0])
	mean, std = make([]float32, n), make([]float32, n)
	k := float64(len(vs))
	for i := range n {
		var s, ss float64
		for _, v := range vs {
			s += float64(v[i])
			ss += float64(v[i]) * float64(v[i])
		}
		m := s / k
		mean[i] = float32(m)
		std[i] = float32(math.Sqrt(max(ss/k-m*m, 0)))
	}
	return mean, std
}
