package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/swarmtrain/swarmtrain/node"
)

// roundLine is the coordinator's line for a sealed round; a language
// model's says held-out bits per character instead of test accuracy.
func roundLine(w io.Writer, s node.RoundSummary, text bool) {
	metric := fmt.Sprintf("test accuracy %.2f%%", 100*s.TestAccuracy)
	if text {
		metric = fmt.Sprintf("held-out %.3f bits/char", s.TestLoss/math.Ln2)
	}
	fmt.Fprintf(w, "round %3d  accepted %d  rejected %d  train loss %.4f  %s  bytes in %d  seal %s (%s)  model %s\n",
		s.Round, s.Accepted, s.Rejected, s.MeanLoss, metric, s.BytesIn, s.SealTime.Round(time.Millisecond), s.SealedBy, s.Model)
}

// eventLine formats what a node reports for people.
func eventLine(w io.Writer, ev node.Event) {
	switch e := ev.(type) {
	case node.Resumed:
		fmt.Fprintf(w, "resuming swarm %s after round %d\n", e.Swarm, e.After)
	case node.Waiting:
		// Once per deadline, so a coordinator nobody contributes to is
		// never silent.
		fmt.Fprintf(w, "round %d not sealed after %s: it needs %d contribution(s) (round.min_contributions), has %d; waiting for contributors (the join line is above)\n",
			e.Round, e.Waited.Round(time.Second), e.Need, e.Have)
	case node.Finished:
		fmt.Fprintf(w, "swarm %s: all %d rounds done; final model %s\n", e.Swarm, e.Rounds, e.Model)
	case node.Serving:
		fmt.Fprintln(w, "serving the ledger, blocks and API until interrupted (Ctrl-C)")
	case node.Joined:
		fmt.Fprintf(w, "joined swarm %s (%s) as %s at round %d\n", e.Swarm, e.Name, e.Peer, e.Round)
	case node.Worked:
		fmt.Fprintf(w, "round %3d  %d steps on %d samples  loss %.4f  sent %d bytes  computed %s\n", e.Round, e.Steps, e.Samples, e.Loss, e.Bytes, e.Compute.Round(time.Millisecond))
	case node.Applied:
		how := "replayed locally, CID matches the record"
		if !e.Replayed {
			how = "fetched by CID (replay differed or payloads were missing)"
		}
		fmt.Fprintf(w, "applied round %d: model %s %s\n", e.Round, e.Model, how)
	case node.Refused:
		fmt.Fprintf(w, "round %d refused: %s; waiting for the next record\n", e.Round, e.Reason)
	}
}
