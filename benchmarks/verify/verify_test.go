// Package verify benchmarks the cost of checking contributions, per
// contribution, for a 101,770-parameter model (MLP 784-128-10) and its 1 %
// top-k+int8 payloads (the default codec):
//
//   - Tier0: what the gossip validator does on every hop — open the signed
//     contribution (dag-cbor decode, Ed25519 verify) and hash its inline
//     payload against the announced CID.
//
//   - Tier1: verify.CheckRound over a round of 8 contributions (payload
//     hash, decode, finiteness, replay and duplicate lookups, median norm,
//     pairwise near-duplicate similarity), reported per contribution.
//
//   - Tier2: one sampled contribution: the loss of the base and the updated
//     model on 1,000 samples of the contributor's 2,000-sample shard, a
//     random shard and held-out data (verify.Tier2EvalSamples each: 4
//     evaluations of 1,000 samples; the two
//     shared "before" losses are paid once a round and not counted).
//
//   - Tier1Round: verify.CheckRound over whole rounds of 8 to 128 honest
//     contributions (the seal's tier 1 as a function of the peer count).
//
//     go test -run '^$' -bench . -benchtime 20x -cpu 1 ./benchmarks/verify/
package verify

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

var spec = train.ModelSpec{Kind: "mlp", Hidden: []int{128}}

const roundSize = 8

// round builds roundSize signed contributions with random sparse updates.
func round(b *testing.B) (n int, base cid.Cid, raws [][]byte, cands []verify.Candidate) {
	n, err := train.NumParams(spec)
	if err != nil {
		b.Fatal(err)
	}
	codec, _ := gradient.NewCodec(gradient.TopKInt8, 0.01)
	base, _ = verify.PayloadCID([]byte("base"))
	seed := int64(1)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < roundSize; i++ {
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(r.NormFloat64()) * 1e-3
		}
		payload, err := gradient.Marshal(codec, v)
		if err != nil {
			b.Fatal(err)
		}
		key, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(key)
		pc, _ := verify.PayloadCID(payload)
		c := &record.Contribution{Swarm: "s", Round: 3, Peer: id.String(), Base: base, Payload: pc, Inline: &payload, Codec: codec.Name(),
			PayloadBytes: int64(len(payload)), Samples: 1600, Loss: 0.3, Seed: &seed}
		blk, err := record.Sign(key, c)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, blk.RawData())
		cands = append(cands, verify.Candidate{Contribution: c, Payload: payload})
	}
	return n, base, raws, cands
}

func BenchmarkTier0(b *testing.B) {
	_, _, raws, _ := round(b)
	b.SetBytes(int64(len(raws[0])))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, _, err := record.Open[record.Contribution](raws[i%len(raws)])
		if err != nil {
			b.Fatal(err)
		}
		if pc, err := verify.PayloadCID(*c.Inline); err != nil || !pc.Equals(c.Payload) {
			b.Fatal("payload CID")
		}
	}
}

func BenchmarkTier1(b *testing.B) {
	n, base, _, cands := round(b)
	rc := verify.RoundContext{Round: 3, Base: base, Seed: 1, Elems: n, History: map[cid.Cid]int64{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vs, err := verify.CheckRound(verify.DefaultTier1Params(), rc, cands)
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range vs {
			if !v.Accepted() {
				b.Fatal(v.Reason)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*roundSize)/1e6, "ms/contribution")
	b.ReportMetric(float64(n), "params")
}

// BenchmarkTier1Round: tier 1 over a round of n honest top-k updates that
// share the coordinates every honest update moves most (half of each
// support), as a round's do; per round and per contribution.
func BenchmarkTier1Round(b *testing.B) {
	n, err := train.NumParams(spec)
	if err != nil {
		b.Fatal(err)
	}
	codec, _ := gradient.NewCodec(gradient.TopKInt8, 0.01)
	base, _ := verify.PayloadCID([]byte("base"))
	seed := int64(1)
	r := rand.New(rand.NewPCG(3, 4))
	common := r.Perm(n)[:n/200]
	var cands []verify.Candidate
	for _, peers := range []int{8, 16, 32, 64, 128} {
		for len(cands) < peers {
			v := make([]float32, n)
			for j := range v {
				v[j] = float32(r.NormFloat64()) * 1e-3
			}
			for _, j := range common {
				v[j] += 0.01
			}
			payload, err := gradient.Marshal(codec, v)
			if err != nil {
				b.Fatal(err)
			}
			pc, _ := verify.PayloadCID(payload)
			c := &record.Contribution{Swarm: "s", Round: 3, Peer: fmt.Sprintf("peer-%d", len(cands)), Base: base, Payload: pc, Inline: &payload,
				Codec: codec.Name(), PayloadBytes: int64(len(payload)), Samples: 1600, Loss: 0.3, Seed: &seed}
			cands = append(cands, verify.Candidate{Contribution: c, Payload: payload})
		}
		rc := verify.RoundContext{Round: 3, Base: base, Seed: 1, Elems: n, History: map[cid.Cid]int64{}}
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			for b.Loop() {
				vs, err := verify.CheckRound(verify.DefaultTier1Params(), rc, cands[:peers])
				if err != nil {
					b.Fatal(err)
				}
				for _, v := range vs {
					if !v.Accepted() {
						b.Fatal(v.Reason)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/round")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*peers)/1e6, "ms/contribution")
		})
	}
}

func BenchmarkTier2(b *testing.B) {
	dir := testdata.MNISTDir(b)
	trainSet, testSet, err := data.LoadMNIST(dir)
	if err != nil {
		b.Fatal(err)
	}
	m, err := train.New(spec, 64, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const shard = 2000
	random, held := verify.Tier2Sets(5, trainSet, testSet, shard)
	checker, err := verify.NewTier2Checker(m, train.Snapshot(m), random, held)
	if err != nil {
		b.Fatal(err)
	}
	own := verify.OwnShard(trainSet, 1, "peer", shard)
	upd := make([]float32, m.NumParams())
	for i := range upd {
		upd[i] = 1e-4 * float32(i%7-3)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := checker.Check(own, upd); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/sampled-peer")
	b.ReportMetric(4*verify.Tier2EvalSamples, "samples-evaluated")
}
