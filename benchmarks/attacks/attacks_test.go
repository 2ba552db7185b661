package main

import (
	"context"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// TestAttacksShort runs the suite's short form (make test): a few rounds
// of the classes that once broke the swarm, checking what must hold from
// the first round on — no honest update rejected or failed, every accepted
// update weighing what the config says whatever its author claims.
// `go run ./benchmarks/attacks` is the full suite.
func TestAttacksShort(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(3, 4, 4, 8, trainSet, testSet)
	for _, c := range []string{"inflate", "sybil", "lazy-steps"} {
		r, err := e.run(context.Background(), c, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: kept out %.1f%% of %d, accuracy %.2f%%, scores %v", c, r.KeptOut, r.AdvUpdates, r.Accuracy, r.Scores)
		if r.HonestRejected+r.HonestFailed > 0 {
			t.Errorf("%s: %d honest updates rejected, %d failed", c, r.HonestRejected, r.HonestFailed)
		}
		if r.WrongWeights > 0 {
			t.Errorf("%s: %d accepted updates do not weigh inner_steps x batch_size", c, r.WrongWeights)
		}
	}
}
