package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// RecheckSummary is what a recheck reproduced.
type RecheckSummary struct {
	LedgerSummary
	Entries int // contribution verdicts re-derived
	Sampled int // tier-2 samples whose draw was re-derived
	Scores  int // peer scores recomputed, summed over rounds
}

// Recheck verifies the ledger (see Ledger), then replays it from round 0:
// for every entry it re-runs tier 0 on the stored contribution block
// (signature, author, swarm, round, payload CID, and for an equivocation
// both signed blocks), re-runs tier 1 over each round's stored payloads in
// record order (CheckRound), re-draws the tier-2 sample from the round's
// contributions, and recomputes every peer's score from the verdicts and
// tier-2 evidence with DefaultScoreParams. It returns the first verdict,
// sample or score it cannot reproduce, naming the record and the peer.
// elems is the model's parameter count (from the swarm's config).
//
// A rejection as unavailable cannot be disproven (the payload may have
// reached this store later) and is taken as recorded.
func Recheck(ctx context.Context, store *storage.Store, elems int) (RecheckSummary, error) {
	var sum RecheckSummary
	ls, m, chain, err := walk(ctx, store)
	sum.LedgerSummary = ls
	if err != nil {
		return sum, err
	}
	tier1, scoring := DefaultTier1Params(), DefaultScoreParams()
	history := map[cid.Cid]int64{}
	scores := map[string]*record.PeerScore{}
	seed := m.Seed
	for _, s := range chain {
		rec := s.rec
		where := fmt.Sprintf("record %s (round %d)", s.cid, rec.Round)
		cands := make([]Candidate, len(rec.Entries))
		contribs := make([]cid.Cid, len(rec.Entries))
		for i, e := range rec.Entries {
			c, err := recheckTier0(ctx, store, ls.Swarm, rec.Round, e, elems)
			if err != nil {
				return sum, fmt.Errorf("%s: peer %s: %w", where, e.Peer, err)
			}
			cands[i] = c
			contribs[i] = e.Contribution
		}
		verdicts, err := CheckRound(tier1, RoundContext{Round: rec.Round, Base: rec.Base, Seed: seed, Elems: elems, History: history}, cands)
		if err != nil {
			return sum, err
		}
		var accepted []string
		for i, e := range rec.Entries {
			v := verdicts[i]
			if v.Accepted() {
				accepted = append(accepted, e.Peer) // tier 2 samples from these
				if e.Tier2 != nil {
					v.Reason = Tier2Reason(*e.Tier2)
				}
			}
			if Kind(e.Reason) == ReasonUnavailable {
				v = Verdict{Reason: e.Reason}
			}
			got, want := verdictOf(v), verdictOf(Verdict{Reason: e.Reason})
			if e.Verdict != "accepted" && e.Verdict != "rejected" {
				return sum, fmt.Errorf("%s: peer %s: unknown verdict %q", where, e.Peer, e.Verdict)
			}
			if (e.Verdict == "accepted") != v.Accepted() || got != want {
				return sum, fmt.Errorf("%s: peer %s: recorded %s, rechecked %s", where, e.Peer, describeVerdict(e.Verdict, e.Reason), describeVerdict(got, v.Reason))
			}
			if v.Vec != nil && v.Norm != e.Norm {
				return sum, fmt.Errorf("%s: peer %s: recorded norm %v, rechecked %v", where, e.Peer, e.Norm, v.Norm)
			}
			if v.Vec == nil && e.Tier2 != nil {
				return sum, fmt.Errorf("%s: peer %s: a contribution rejected by tier 1 carries tier-2 evidence", where, e.Peer)
			}
			sum.Entries++
		}
		if err := recheckSample(rec, seed, contribs, accepted); err != nil {
			return sum, fmt.Errorf("%s: %w", where, err)
		}
		if rec.SampleSize != nil {
			sum.Sampled += min(int(*rec.SampleSize), len(accepted))
		}
		for _, e := range rec.Entries {
			ps := scores[e.Peer]
			if ps == nil {
				ps = &record.PeerScore{Peer: e.Peer}
				scores[e.Peer] = ps
			}
			scoring.Apply(ps, rec.Round, e)
			if ps.Score != e.Score {
				return sum, fmt.Errorf("%s: peer %s: recorded score %v, recomputed %v", where, e.Peer, e.Score, ps.Score)
			}
			if _, ok := history[e.Payload]; !ok {
				history[e.Payload] = rec.Round
			}
		}
		if err := sameScores(rec.Scores, scores); err != nil {
			return sum, fmt.Errorf("%s: %w", where, err)
		}
		sum.Scores += len(rec.Scores)
		seed = rec.Seed
	}
	return sum, nil
}

// recheckTier0 re-runs tier 0 on an entry's stored contribution block and
// returns the candidate tier 1 rechecks.
func recheckTier0(ctx context.Context, store *storage.Store, swarm string, round int64, e record.Entry, elems int) (Candidate, error) {
	c, err := openContribution(ctx, store, e.Contribution, swarm, round, e.Peer)
	if err != nil {
		return Candidate{}, err
	}
	if !c.Payload.Equals(e.Payload) {
		return Candidate{}, fmt.Errorf("contribution %s announces payload %s, the entry %s", e.Contribution, c.Payload, e.Payload)
	}
	cand := Candidate{Contribution: c}
	switch Kind(e.Reason) {
	case ReasonEquivocation:
		parts := strings.Fields(e.Evidence)
		if len(parts) != 2 || parts[0] == parts[1] {
			return cand, fmt.Errorf("equivocation evidence %q does not name two contributions", e.Evidence)
		}
		for _, p := range parts {
			pc, err := cid.Decode(p)
			if err != nil {
				return cand, fmt.Errorf("equivocation evidence %q: %w", p, err)
			}
			if _, err := openContribution(ctx, store, pc, swarm, round, e.Peer); err != nil {
				return cand, fmt.Errorf("equivocation evidence: %w", err)
			}
		}
		cand.Fault, cand.Evidence = e.Reason, e.Evidence
		return cand, nil
	case ReasonOversized:
		if c.Inline == nil || len(*c.Inline) <= MaxPayloadBytes(elems) {
			return cand, fmt.Errorf("recorded %q, but contribution %s carries no payload over %d bytes", e.Reason, e.Contribution, MaxPayloadBytes(elems))
		}
		cand.Fault = e.Reason
		return cand, nil
	}
	if c.Inline != nil {
		cand.Payload = *c.Inline
	} else if b, err := store.Get(ctx, c.Payload); err == nil {
		cand.Payload = b.RawData()
	} else if e.Verdict == "accepted" || !isUnavailable(e.Reason) {
		return cand, fmt.Errorf("cannot recheck: payload %s is not in this store", c.Payload)
	}
	return cand, nil
}

// openContribution loads a contribution block and checks it is peer's,
// signed by peer, for this swarm and round.
func openContribution(ctx context.Context, store *storage.Store, c cid.Cid, swarm string, round int64, peer string) (*record.Contribution, error) {
	b, err := store.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("contribution %s: %w", c, err)
	}
	rec, signer, err := record.OpenBlock[record.Contribution](b)
	switch {
	case err != nil:
		return nil, fmt.Errorf("contribution %s: %w", c, err)
	case signer.String() != peer || rec.Peer != peer:
		return nil, fmt.Errorf("contribution %s is signed by %s for peer %s", c, signer, rec.Peer)
	case rec.Swarm != swarm || rec.Round != round:
		return nil, fmt.Errorf("contribution %s is for swarm %s round %d", c, rec.Swarm, rec.Round)
	}
	return rec, nil
}

// recheckSample re-draws the tier-2 sample and compares it with the
// entries that carry tier-2 evidence.
func recheckSample(rec *record.RoundRecord, seed int64, contribs []cid.Cid, accepted []string) error {
	var checked []string
	for _, e := range rec.Entries {
		if e.Tier2 != nil {
			checked = append(checked, e.Peer)
		}
	}
	slices.Sort(checked)
	if rec.SampleSeed == nil || rec.SampleSize == nil {
		if len(checked) > 0 {
			return fmt.Errorf("tier-2 evidence for %v without a recorded sample", checked)
		}
		return nil
	}
	if want := SampleSeed(seed, contribs); *rec.SampleSeed != want {
		return fmt.Errorf("recorded tier-2 sample seed %d, recomputed %d", *rec.SampleSeed, want)
	}
	if want := Sample(*rec.SampleSeed, accepted, int(*rec.SampleSize)); !slices.Equal(checked, want) {
		return fmt.Errorf("tier 2 checked %v, the sample draws %v", checked, want)
	}
	return nil
}

// sameScores compares a record's score table with the recomputed one.
func sameScores(got []record.PeerScore, want map[string]*record.PeerScore) error {
	if len(got) != len(want) {
		return fmt.Errorf("records %d peer scores, recomputed %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := want[g.Peer]
		if !ok {
			return fmt.Errorf("scores peer %s, which never contributed", g.Peer)
		}
		if g.Score != w.Score || g.Accepted != w.Accepted || g.Rejected != w.Rejected || g.LastRound != w.LastRound || !sameCounts(g.Rejections, w.Rejections) {
			return fmt.Errorf("peer %s: recorded score %v (accepted %d, rejected %d), recomputed %v (accepted %d, rejected %d)",
				g.Peer, g.Score, g.Accepted, g.Rejected, w.Score, w.Accepted, w.Rejected)
		}
	}
	return nil
}

func sameCounts(a, b *[]record.ReasonCount) bool {
	var x, y []record.ReasonCount
	if a != nil {
		x = *a
	}
	if b != nil {
		y = *b
	}
	return slices.Equal(x, y)
}

func isUnavailable(reason string) bool { return Kind(reason) == ReasonUnavailable }

func verdictOf(v Verdict) string {
	if v.Accepted() {
		return "accepted"
	}
	return "rejected as " + Kind(v.Reason)
}

func describeVerdict(verdict, reason string) string {
	if reason == "" {
		return verdict
	}
	return verdict + " (" + reason + ")"
}
