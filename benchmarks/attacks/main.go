// Command attacks runs the attack suite: for each attack class and seed, a
// swarm of honest workers (round.Worker, the contributors' code) and
// adversaries (code in this folder, never in production) runs rounds
// through the round engine (round.Run with tier 2 on data, the
// coordinator's code) in one process, without the network, next to an
// honest-only run of the same seed. It reports, per class, the share of
// adversarial updates kept out of the model, the final accuracy against
// the honest-only run, whether every adversary ends below every honest
// peer, and whether any honest update was rejected.
//
//	go run ./benchmarks/attacks                          # 9 classes, 5 seeds, 20 rounds
//	go run ./benchmarks/attacks -seeds 1 -rounds 5 -classes signflip,alie
//	go run ./benchmarks/attacks -json > attacks.json
//
// The swarm is config.Default(): MNIST MLP 784-256-128-10, 4 honest
// contributors, inner_steps 20, batch 64, shard 2000, top-k+int8 at 1 %,
// clip-mean, tier 2 sampling 2 updates a round.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/train/data"
)

func main() {
	seeds := flag.Int("seeds", 5, "seeds to run each class with (first..first+seeds-1)")
	first := flag.Int("first", 1, "the first seed")
	rounds := flag.Int("rounds", 20, "rounds per run")
	honest := flag.Int("honest", 4, "honest contributors")
	audits := flag.Int("audits", 4, "tier-3 audits per round (verify.audits; 0: none, the rules before tier 3)")
	exclude := flag.Int("exclude", 8, "rounds a first proven fault excludes a peer, doubling (verify.exclude_rounds; 0: none)")
	peerAudits := flag.Bool("peer-audits", false, "honest contributors also audit each other (verify.peer_audits): each replays its assigned contribution of the previous round and signs a verdict")
	list := flag.String("classes", strings.Join(classNames(), ","), "attack classes, comma-separated: "+strings.Join(classNames(), ", "))
	dataDir := flag.String("data", defaultData(), "MNIST directory")
	asJSON := flag.Bool("json", false, "print every run as JSON")
	marginsWrite := flag.String("margins-write", "", "measure audit margins: each attack's distance from the honest replay of its committed state, and dump honest-0's replay inputs into this folder")
	marginsRead := flag.String("margins-read", "", "replay the rounds another build dumped into this folder (-margins-write) and print the distances")
	flag.Parse()
	names := strings.Split(*list, ",")
	for _, n := range names {
		if _, ok := classes[n]; !ok {
			fmt.Fprintf(os.Stderr, "attacks: -classes: unknown class %q (known: %s)\n", n, strings.Join(classNames(), ", "))
			os.Exit(2)
		}
	}
	trainSet, testSet, err := data.LoadMNIST(*dataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacks:", err)
		os.Exit(1)
	}
	e := newEnv(*rounds, *honest, *audits, *exclude, trainSet, testSet)
	e.sc.Verify.PeerAudits = *peerAudits
	e.p = round.ParamsOf(e.sc)
	ctx := context.Background()
	if *marginsRead != "" {
		if err := crossBuild(ctx, e, *marginsRead, *rounds); err != nil {
			fmt.Fprintln(os.Stderr, "attacks:", err)
			os.Exit(1)
		}
		return
	}
	if *marginsWrite != "" {
		if err := os.MkdirAll(*marginsWrite, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "attacks:", err)
			os.Exit(1)
		}
		e.margins = newMargins(*marginsWrite)
		*seeds = 1
	}
	var all []result
	for s := *first; s < *first+*seeds; s++ {
		base, err := e.run(ctx, "", int64(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "attacks:", err)
			os.Exit(1)
		}
		all = append(all, base)
		if !*asJSON {
			fmt.Printf("seed %d honest-only: accuracy %.2f%%, honest rejected %d, scores %v, audits %d (%.2fx honest work), peer verdicts %d (%.2fx), refereed %d (%s)\n", s, base.Accuracy, base.HonestRejected, base.Scores, base.Audits, base.AuditTime/max(base.HonestWork, 1e-9),
				base.PeerVerdicts, base.PeerAuditTime/max(base.HonestWork, 1e-9), base.Refereed, base.Elapsed)
		}
		for _, c := range names {
			r, err := e.run(ctx, c, int64(s))
			if err != nil {
				fmt.Fprintln(os.Stderr, "attacks:", err)
				os.Exit(1)
			}
			r.HonestOnly, r.Delta = base.Accuracy, r.Accuracy-base.Accuracy
			all = append(all, r)
			if !*asJSON {
				fmt.Printf("seed %d %-11s kept out %5.1f%% (%d/%d)  accuracy %.2f%% (%+.2f pt)  adversary max %.2f < honest min %.2f: %v  honest rejected %d failed %d  held %d  wrong weights %d  rejections %v  audits %d (%.2fx honest work)  peer verdicts %d (%.2fx) refereed %d  max cosine honest %.3f adversaries %.3f (%s)\n",
					s, c, r.KeptOut, r.AdvUpdates-r.AdvAccepted, r.AdvUpdates, r.Accuracy, r.Delta, r.MaxAdversary, r.MinHonest, r.Separated,
					r.HonestRejected, r.HonestFailed, r.Held, r.WrongWeights, r.Rejections, r.Audits, r.AuditTime/max(r.HonestWork, 1e-9), r.PeerVerdicts, r.PeerAuditTime/max(r.HonestWork, 1e-9), r.Refereed, r.HonestCosine, r.AdvCosine, r.Elapsed)
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			fmt.Fprintln(os.Stderr, "attacks:", err)
			os.Exit(1)
		}
		return
	}
	summarize(names, all)
	if e.margins != nil {
		for _, c := range names {
			fmt.Printf("margin %-11s closest adversarial payload to its honest replay: %.4f\n", c, e.margins.worst[c])
		}
	}
}

// summarize prints one line per class over all seeds.
func summarize(names []string, all []result) {
	fmt.Println("class        kept out  worst Δacc  separated  honest rejected  audit cost")
	for _, c := range names {
		var upd, acc, sep, n, hrej int
		worst, work, audit := 0.0, 0.0, 0.0
		for _, r := range all {
			if r.Class != c {
				continue
			}
			n++
			upd += r.AdvUpdates
			acc += r.AdvAccepted
			hrej += r.HonestRejected + r.HonestFailed
			worst = min(worst, r.Delta)
			work += r.HonestWork
			audit += r.AuditTime
			if r.Separated {
				sep++
			}
		}
		fmt.Printf("%-11s  %6.1f%%  %+8.2f pt  %d/%d        %d                %.2fx\n", c, 100*float64(upd-acc)/float64(max(upd, 1)), worst, sep, n, hrej, audit/max(work, 1e-9))
	}
}

func defaultData() string {
	if d := os.Getenv("SWARMTRAIN_DATA"); d != "" {
		return filepath.Join(d, "mnist")
	}
	return "../shared/data/mnist"
}
