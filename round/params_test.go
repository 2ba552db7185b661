package round

import (
	"context"
	"strings"
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
		cases = append(cases, func(sc *config.Swarm) {
			sc.Model.Kind = v
			if v == "transformer" { // a language model needs a text dataset
				sc.Model.Layers, sc.Model.Width, sc.Model.Heads, sc.Model.Context = 1, 8, 2, 4
				sc.Data = config.Data{Name: "t", Kind: "text", Hash: strings.Repeat("0", 64), Classes: 7}
			}
		})
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
		shard := set
		if sc.Model.Kind == "transformer" {
			shard = textSet(7, 4, 400)
		}
		payload, _, _, err := w.Work(context.Background(), st.Params, shard, 1)
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

// textSet is a random text of n tokens from a vocabulary of v, in windows
// of ctx.
func textSet(v, ctx, n int) *data.Set {
	r := data.Rand(9)
	tok := make([]uint8, n)
	for i := range tok {
		tok[i] = uint8(r.IntN(v))
	}
	return &data.Set{Tokens: tok, Context: ctx, Stride: ctx, N: (n - 1) / ctx, Classes: v}
}
