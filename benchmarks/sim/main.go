// Command sim simulates a swarm in one process: N workers on disjoint MNIST
// shards run rounds of H inner steps from the shared model and compress
// their pseudo-gradients (round.Worker, the contributors' code), and the
// round engine judges, aggregates and steps them (round.Run, the
// coordinator's code), without the network. It reports test accuracy per
// round and the bytes each worker sent.
//
//	go run ./benchmarks/sim -codec topk+int8 -density 0.01 -workers 4 -h 20 -rounds 60
//	go run ./benchmarks/sim -codec dense -workers 4 -h 20 -rounds 60 -json
//	go run ./benchmarks/sim -codec topk+int8 -density 0.01 -h 20 -rounds 60 -overlap
//
// -overlap measures overlapped rounds (one-step-delayed application, as
// streaming / overlapped DiLoCo does; the swarm's round.overlap): a worker
// starts round r+1's local work while round r is being sealed, so from the
// model before round r's aggregate is applied; round r+1's engine applies
// that update to the model after round r. Rounds 0 and 1 both start from
// the initial model. The rule is the engine's (round.Params.Built), so the
// sim runs exactly what an overlapped swarm runs; unlike the swarm config
// it also allows dense codecs, to measure why the config refuses them.
//
// Every setting maps to a swarm config field (round.ParamsOf), so a
// simulated round is a swarm round: same worker, same engine.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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

type roundReport struct {
	Round          int     `json:"round"`
	TestAccuracy   float64 `json:"test_accuracy"`
	TestLoss       float64 `json:"test_loss"`
	TrainLoss      float64 `json:"train_loss"`
	BytesPerWorker int     `json:"bytes_per_worker"`
	Rejected       int     `json:"rejected"` // by the round engine's checks (honest workers: 0)
}

type report struct {
	Codec          string        `json:"codec"`
	Overlap        bool          `json:"overlap"`
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
	efMode := flag.String("ef", "on", "error feedback: on (local work starts from the global model minus the residual) or off")
	inner := flag.String("inner", "adam", "inner optimizer: adam or sgd (lr from -lr)")
	dataDir := flag.String("data", defaultData(), "MNIST directory")
	asJSON := flag.Bool("json", false, "print a JSON report")
	evalEvery := flag.Int("eval-every", 1, "evaluate on the test set every this many rounds (and after the last)")
	cfgPath := flag.String("config", "", "take the model, dataset and settings from this swarm config (flags given explicitly override it); -data is then the dataset's directory")
	evalSamples := flag.Int("eval-samples", 0, "evaluate on the first N test samples only (0: all)")
	seed := flag.Uint64("seed", 1, "seed of the initial model, the shard split and the batches (with -config: the config's seed unless given)")
	overlap := flag.Bool("overlap", false, "overlapped rounds: each round's local work starts from the model before the previous round's aggregate (one-step-delayed application)")
	flag.Parse()
	sc := config.Default()
	if *cfgPath != "" {
		var err error
		if sc, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(os.Stderr, "sim:", err)
			os.Exit(2)
		}
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["seed"] {
			*seed = sc.Seed
		}
		if !set["h"] {
			*h = sc.Train.InnerSteps
		}
		if !set["rounds"] {
			*rounds = sc.Train.Rounds
		}
		if !set["batch"] {
			*batch = sc.Train.BatchSize
		}
		if !set["lr"] {
			*lr = sc.Train.InnerOptimizer.LR
		}
		if !set["codec"] {
			*codecName = sc.Compression.Codec
		}
		if !set["density"] {
			*density = sc.Compression.Density
		}
		if !set["outer-lr"] {
			*outerLR = sc.Train.OuterOptimizer.LR
		}
		if !set["outer-momentum"] {
			*outerMom = sc.Train.OuterOptimizer.Momentum
		}
		*hidden = 0
	}
	if *hidden > 0 {
		sc.Model.Hidden = []int{*hidden}
	}
	sc.Train.InnerSteps, sc.Train.BatchSize, sc.Train.Rounds = *h, *batch, *rounds
	if *cfgPath == "" || sc.Train.InnerOptimizer.Name != *inner || flagSet("lr") {
		b2 := 0.999
		if *cfgPath != "" && sc.Train.InnerOptimizer.Beta2 != 0 {
			b2 = sc.Train.InnerOptimizer.Beta2
		}
		sc.Train.InnerOptimizer = config.Optimizer{Name: *inner, LR: *lr, Beta1: 0.9, Beta2: b2, Eps: 1e-8}
	}
	sc.Train.OuterOptimizer = config.Optimizer{Name: "nesterov", LR: *outerLR, Momentum: *outerMom}
	sc.Compression.Codec, sc.Compression.Density = *codecName, *density
	if *cfgPath != "" && !flagSet("ef") {
		*efMode = map[bool]string{true: "on", false: "off"}[sc.Compression.ErrorFeedback]
	}
	if *cfgPath != "" && !flagSet("rule") {
		*rule = sc.Verify.Aggregation
	}
	switch *efMode {
	case "on":
		sc.Compression.ErrorFeedback = true
	case "off":
		sc.Compression.ErrorFeedback = false
	default:
		fmt.Fprintf(os.Stderr, "sim: -ef: %q is not on or off\n", *efMode)
		os.Exit(2)
	}
	sc.Verify.Aggregation, sc.Verify.TrimFraction = *rule, 0.2
	sc.Seed = *seed
	if err := run(sc, *workers, *rounds, *dataDir, *asJSON, *evalEvery, *evalSamples, *efMode, *overlap); err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	found := false
	flag.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

func defaultData() string {
	if d := os.Getenv("SWARMTRAIN_DATA"); d != "" {
		return filepath.Join(d, "mnist")
	}
	return "../shared/data/mnist"
}

func run(sc *config.Swarm, workers, rounds int, dataDir string, asJSON bool, evalEvery, evalSamples int, efName string, overlap bool) error {
	start := time.Now()
	ctx := context.Background()
	p := round.ParamsOf(sc)
	p.Overlap = overlap
	trainSet, testSet, err := data.Load(round.DataSpec(sc), dataDir)
	if err != nil {
		return err
	}
	testSet = testSet.Head(evalSamples)
	global, err := train.New(p.Model, p.BatchSize, sc.Seed)
	if err != nil {
		return err
	}
	n := global.NumParams()
	// Disjoint shards: worker w owns every workers-th sample of a fixed permutation.
	perm := data.Permutation(sc.Seed, trainSet.N)
	type worker struct {
		id    string
		w     *round.Worker
		shard *data.Set
	}
	ws := make([]*worker, workers)
	for i := range ws {
		var idx []int
		for j := i; j < len(perm); j += workers {
			idx = append(idx, perm[j])
		}
		m, err := train.New(p.Model, p.BatchSize, sc.Seed)
		if err != nil {
			return err
		}
		w, err := round.NewWorker(p, m)
		if err != nil {
			return err
		}
		ws[i] = &worker{id: fmt.Sprintf("w%03d", i), w: w, shard: trainSet.Subset(idx)}
	}
	rep := report{Overlap: overlap, Codec: p.Codec, ErrorFeedback: efName, Density: p.Density, Workers: workers, H: p.InnerSteps, Rounds: rounds, Params: n}
	initial, err := round.CheckpointFile(p.Model, train.Snapshot(global))
	if err != nil {
		return err
	}
	initCID, err := storage.FileCID(initial)
	if err != nil {
		return err
	}
	st := round.Genesis(&record.SwarmManifest{InitialModel: initCID, Seed: int64(sc.Seed)}, train.Snapshot(global))
	rejected := 0 // contributions the engine refused, all rounds
	for r := 0; r < rounds; r++ {
		// The model local work starts from: the round's own, or with
		// -overlap the one before the previous round's aggregate.
		builtOn, base := p.Built(st)
		var in []round.Contribution
		bytesRound := 0
		for i, w := range ws {
			// Seed 1 draws batch seeds 0, 1, 2, ...; another seed shifts
			// them out of that range.
			msg, _, stats, err := w.w.Work(ctx, base, w.shard, (sc.Seed-1)<<32+uint64(r*workers+i))
			if err != nil {
				return err
			}
			rep.SamplesPerRun += stats.Samples
			bytesRound = len(msg)
			rep.BytesPerWorker += len(msg) // summed over workers; divided below
			pc, err := verify.PayloadCID(msg)
			if err != nil {
				return err
			}
			seed := st.Seed
			c := &record.Contribution{Round: st.Round, Peer: w.id, Base: builtOn, Payload: pc, Codec: p.Codec, Samples: int64(stats.Samples), Loss: stats.MeanLoss, Seed: &seed}
			in = append(in, round.Contribution{Record: c, Block: pc, Payload: msg})
		}
		out, err := round.Run(ctx, p, st, in, nil)
		if err != nil {
			return err
		}
		st = out.Next
		rejected += out.Rejected
		if (r+1)%evalEvery != 0 && r != rounds-1 {
			continue
		}
		if err := global.WriteParams(st.Params); err != nil {
			return err
		}
		tl, ta, err := global.Evaluate(testSet)
		if err != nil {
			return err
		}
		rr := roundReport{Round: r, TestAccuracy: ta, TestLoss: tl, TrainLoss: out.MeanLoss, BytesPerWorker: bytesRound, Rejected: out.Rejected}
		rep.PerRound = append(rep.PerRound, rr)
		if !asJSON {
			if p.Model.Text() {
				fmt.Printf("round %3d  train loss %.4f  held-out %.3f bits/char  %d bytes/worker  %d rejected so far  %s\n", r, out.MeanLoss, train.MetricsOf(p.Model, tl, ta).BPC, bytesRound, rejected, time.Since(start).Round(time.Second))
			} else {
				fmt.Printf("round %3d  train loss %.4f  test loss %.4f  test accuracy %.2f%%  %d bytes/worker\n", r, out.MeanLoss, tl, 100*ta, bytesRound)
			}
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
	mode := ""
	if overlap {
		mode = ", overlapped rounds"
	}
	fmt.Printf("%s (density %g, error feedback %s%s), %d workers, H=%d, %d rounds, %d samples: final test accuracy %.2f%%, %d bytes per worker (dense fp32: %d, %.0fx less) in %s\n",
		p.Codec, p.Density, efName, mode, workers, p.InnerSteps, rounds, rep.SamplesPerRun, 100*rep.FinalAccuracy, rep.BytesPerWorker, rep.DenseBytes,
		float64(rep.DenseBytes)/float64(rep.BytesPerWorker), rep.Elapsed)
	return nil
}
