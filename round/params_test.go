package round

import (
	"context"
	"testing"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// TestEveryConfigNameRuns builds and runs a round with every name the config
// accepts for the model, the inner and outer optimizers, the codec, the
// aggregation rule, and with error feedback on and off: no setting is
// accepted that the round engine cannot run.
func TestEveryConfigNameRuns(t *testing.T) {
	ch := config.Accepted()
	set := data.Synthetic(256, 3)
	var cases []func(*config.Swarm)
	for _, v := range ch.ModelKinds {
		cases = append(cases, func(sc *config.Swarm) { sc.Model.Kind = v })
	}
	for _, v := range ch.InnerOptimizers {
		cases = append(cases, func(sc *config.Swarm) { sc.Train.InnerOptimizer.Name = v })
	}
	for _, v := range ch.OuterOptimizers {
		cases = append(cases, func(sc *config.Swarm) { sc.Train.OuterOptimizer.Name = v })
	}
	for _, v := range ch.Codecs {
		cases = append(cases, func(sc *config.Swarm) { sc.Compression.Codec = v })
	}
	for _, v := range ch.Aggregations {
		cases = append(cases, func(sc *config.Swarm) { sc.Verify.Aggregation = v })
	}
	for _, v := range []bool{true, false} {
		cases = append(cases, func(sc *config.Swarm) { sc.Compression.ErrorFeedback = v })
	}
	for i, edit := range cases {
		sc := config.Default()
		sc.Model.Hidden, sc.Model.Channels, sc.Model.Dense = []int{8}, []int{2, 2}, 8
		sc.Train.InnerSteps, sc.Train.BatchSize, sc.Train.ShardSize = 2, 8, 64
		edit(sc)
		if err := sc.Validate(); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		p := ParamsOf(sc)
		model, err := train.New(p.Model, p.BatchSize, sc.Seed)
		if err != nil {
			t.Fatalf("case %d (%+v): %v", i, p, err)
		}
		w, err := NewWorker(p, model)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		st := Genesis(&record.SwarmManifest{Seed: 1}, train.Snapshot(model))
		payload, _, _, err := w.Work(context.Background(), st.Params, set, 1)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		pc, _ := verify.PayloadCID(payload)
		seed := st.Seed
		in := []Contribution{{Record: &record.Contribution{Peer: "a", Base: st.Base, Payload: pc, Seed: &seed}, Block: pc, Payload: payload}}
		out, err := Run(context.Background(), p, st, in, nil)
		model.Close()
		if err != nil || out.Accepted != 1 {
			t.Fatalf("case %d: %d accepted, %v (%+v)", i, out.Accepted, err, out.Record.Entries)
		}
	}
}
