// Command sim simulates a swarm in one process: N workers on disjoint MNIST
// shards run rounds of H inner steps from the shared model, compress their
// pseudo-gradients with error feedback, send them through the wire format,
// and the coordinator aggregates them and takes an outer Nesterov step,
// exactly as a swarm round does, without the network. It reports test
// accuracy per round and the bytes each worker sent.
//
//	go run ./benchmarks/sim -codec topk+int8 -density 0.01 -workers 4 -h 20 -rounds 60
//	go run ./benchmarks/sim -codec dense -workers 4 -h 20 -rounds 60 -json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

type roundReport struct {
	Round          int     `json:"round"`
	TestAccuracy   float64 `json:"test_accuracy"`
	TestLoss       float64 `json:"test_loss"`
	TrainLoss      float64 `json:"train_loss"`
	BytesPerWorker int     `json:"bytes_per_worker"`
}

type report struct {
	Codec          string        `json:"codec"`
	ErrorFeedback  string        `json:"error_feedback"`
	Density        float64       `json:"density"`
	Workers        int           `json:"workers"`
	H              int           `json:"h"`
	Rounds         int           `json:"rounds"`
	Params         int           `json:"params"`
	SamplesPerRun  int           `json:"samples"`
	FinalAccuracy  float64       `json:"final_accuracy"`
	BytesPerWorker int           `json:"bytes_per_worker_total"`
	DenseBytes     int           `json:"dense_fp32_bytes_per_worker_total"`
	Elapsed        string        `json:"elapsed"`
	PerRound       []roundReport `json:"per_round"`
}

func main() {
	codecName := flag.String("codec", "topk+int8", "codec: "+fmt.Sprint(gradient.Names()))
	density := flag.Float64("density", 0.01, "top-k density")
	workers := flag.Int("workers", 4, "workers")
	h := flag.Int("h", 20, "inner steps per round")
	rounds := flag.Int("rounds", 40, "rounds")
	batch := flag.Int("batch", 64, "batch size")
	hidden := flag.Int("hidden", 128, "MLP hidden width (one layer)")
	lr := flag.Float64("lr", 1e-3, "inner adam learning rate")
	outerLR := flag.Float64("outer-lr", gradient.DefaultOuterLR, "outer Nesterov learning rate")
	outerMom := flag.Float64("outer-momentum", gradient.DefaultOuterMomentum, "outer Nesterov momentum")
	rule := flag.String("rule", gradient.Mean, "aggregation rule")
	efMode := flag.String("ef", "start", "error feedback: start (local work starts from the global model minus the residual), add (residual added to the next delta), off")
	efMomentum := flag.Float64("ef-momentum", 0, "DGC momentum correction in error feedback (0 = off)")
	inner := flag.String("inner", "adam", "inner optimizer: adam or sgd (lr from -lr)")
	dataDir := flag.String("data", defaultData(), "MNIST directory")
	asJSON := flag.Bool("json", false, "print a JSON report")
	evalEvery := flag.Int("eval-every", 1, "evaluate on the test set every this many rounds (and after the last)")
	flag.Parse()
	if err := run(*codecName, *density, *workers, *h, *rounds, *batch, *hidden, *lr, *outerLR, *outerMom, *rule, *efMode != "off", *dataDir, *asJSON, *evalEvery, *efMomentum, *inner, *efMode == "start"); err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func defaultData() string {
	if d := os.Getenv("SWARMTRAIN_DATA"); d != "" {
		return filepath.Join(d, "mnist")
	}
	return "../shared/data/mnist"
}

func run(codecName string, density float64, workers, h, rounds, batch, hidden int, lr, outerLR, outerMom float64, rule string, useEF bool, dataDir string, asJSON bool, evalEvery int, efMomentum float64, inner string, efStart bool) error {
	start := time.Now()
	trainSet, testSet, err := data.LoadMNIST(dataDir)
	if err != nil {
		return err
	}
	codec, err := gradient.NewCodec(codecName, density)
	if err != nil {
		return err
	}
	spec := train.ModelSpec{Kind: "mlp", Hidden: []int{hidden}}
	global, err := train.New(spec, batch, 1)
	if err != nil {
		return err
	}
	n := global.NumParams()
	outer, err := gradient.NewOuter(n, outerLR, outerMom)
	if err != nil {
		return err
	}
	// Disjoint shards: worker w owns every workers-th sample of a fixed permutation.
	perm := data.Permutation(1, trainSet.N)
	type worker struct {
		m     train.Model
		opt   train.Optimizer
		shard *data.Set
		ef    *gradient.ErrorFeedback
	}
	ws := make([]*worker, workers)
	for i := range ws {
		var idx []int
		for j := i; j < len(perm); j += workers {
			idx = append(idx, perm[j])
		}
		m, err := train.New(spec, batch, 1)
		if err != nil {
			return err
		}
		opt, err := train.NewOptimizer(train.OptimizerSpec{Name: inner, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, n)
		if err != nil {
			return err
		}
		ws[i] = &worker{m: m, opt: opt, shard: trainSet.Subset(idx), ef: gradient.NewErrorFeedback(n, efMomentum)}
	}
	efName := map[bool]string{true: "start", false: "add"}[efStart]
	if !useEF {
		efName = "off"
	}
	rep := report{Codec: codecName, ErrorFeedback: efName, Density: density, Workers: workers, H: h, Rounds: rounds, Params: n}
	delta := make([]float32, n)
	for r := 0; r < rounds; r++ {
		base := global.Params()
		var ups []gradient.Update
		var loss float64
		bytesRound := 0
		for i, w := range ws {
			w.m.SetParams(base)
			if useEF && efStart {
				p := w.m.Params()
				for j, e := range w.ef.Residual() {
					p[j] -= e
				}
			}
			st, err := train.Local(context.Background(), w.m, w.opt, w.shard, h, uint64(r*workers+i))
			if err != nil {
				return err
			}
			loss += st.MeanLoss / float64(workers)
			rep.SamplesPerRun += st.Samples
			for j, p := range w.m.Params() {
				delta[j] = base[j] - p
			}
			var msg []byte
			if useEF && efStart {
				msg, err = w.ef.CompressWhole(codec, delta)
			} else if useEF {
				msg, err = w.ef.Compress(codec, delta)
			} else {
				msg, err = gradient.Marshal(codec, delta)
			}
			if err != nil {
				return err
			}
			bytesRound = len(msg)
			rep.BytesPerWorker += len(msg) // summed over workers; divided below
			vec, _, err := gradient.Unmarshal(msg, gradient.Limits{Elems: n})
			if err != nil {
				return err
			}
			ups = append(ups, gradient.Update{ID: fmt.Sprintf("w%03d", i), Vec: vec, Weight: float64(st.Samples)})
		}
		res, err := gradient.Aggregate(rule, ups, 0.2)
		if err != nil {
			return err
		}
		if err := outer.Step(global.Params(), res.Vec); err != nil {
			return err
		}
		if (r+1)%evalEvery != 0 && r != rounds-1 {
			continue
		}
		tl, ta, err := global.Evaluate(testSet)
		if err != nil {
			return err
		}
		rr := roundReport{Round: r, TestAccuracy: ta, TestLoss: tl, TrainLoss: loss, BytesPerWorker: bytesRound}
		rep.PerRound = append(rep.PerRound, rr)
		if !asJSON {
			fmt.Printf("round %3d  train loss %.4f  test loss %.4f  test accuracy %.2f%%  %d bytes/worker\n", r, loss, tl, 100*ta, bytesRound)
		}
	}
	rep.BytesPerWorker /= workers
	rep.FinalAccuracy = rep.PerRound[len(rep.PerRound)-1].TestAccuracy
	rep.DenseBytes = rounds * (gradient.HeaderSize + 4*n)
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Printf("%s (density %g, error feedback %s), %d workers, H=%d, %d rounds, %d samples: final test accuracy %.2f%%, %d bytes per worker (dense fp32: %d, %.0fx less) in %s\n",
		codecName, density, efName, workers, h, rounds, rep.SamplesPerRun, 100*rep.FinalAccuracy, rep.BytesPerWorker, rep.DenseBytes,
		float64(rep.DenseBytes)/float64(rep.BytesPerWorker), rep.Elapsed)
	return nil
}
