package main

import (
	"context"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// TestAttacksShort runs the suite's short form (make test): three rounds
// of three classes with tier 3 on (4 audits a round, exclusion 8 rounds):
// no honest update rejected or failed (every honest audit replays
// exactly), every accepted update weighing what the config says whatever
// its author claims, at most one adversarial update in (one round's
// luck before its first audit), every adversary below every honest peer.
// The runs are deterministic (fixed seeds and peer names), so the
// bounds are not a matter of luck here.
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
		if r.Audits == 0 || r.AdvUpdates-r.AdvAccepted < r.AdvUpdates-1 || !r.Separated {
			t.Errorf("%s: %d audits, %d of %d adversarial updates accepted, adversary max %.3f against honest min %.3f",
				c, r.Audits, r.AdvAccepted, r.AdvUpdates, r.MaxAdversary, r.MinHonest)
		}
		if r.WrongWeights > 0 {
			t.Errorf("%s: %d accepted updates do not weigh inner_steps x batch_size", c, r.WrongWeights)
		}
	}
}
