package round

import (
	"context"
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// LastRound is what a round with peer audits (Params.PeerAudits) needs of
// the round before it: who was assigned to recompute whom, and what each
// audited contribution committed to, so that a verdict can be checked and
// refereed. Nil before the first round and when peer audits are off.
type LastRound struct {
	Round int64
	Seed  int64     // that round's shard and step seed
	Base  []float32 // that round's base model
	// Assigned maps each auditor to the peer whose contribution it
	// recomputes (PeerAuditAssignment).
	Assigned map[string]string
	// Work is each contribution of that round a peer may be assigned.
	Work map[string]AuditedWork
}

// AuditedWork is one contribution as a peer audit of it needs it.
type AuditedWork struct {
	Contribution, Payload, Start, End cid.Cid
	// Prev is the payload whose compression left the start state's
	// residual (CheckStart's bound); cid.Undef for the zero state.
	Prev cid.Cid
	// Vec is the decoded update it sent.
	Vec []float32
	// Audit is the coordinator's own audit of it; nil when not drawn.
	Audit *record.Audit
	// Density is the density its author was held to (Params.DensityFor):
	// the replay runs at it, or an honest thinned peer would fail.
	Density float64
}

// PeerAuditAssignment assigns each of peers (the previous round's
// accepted contributors) one other's contribution to recompute: the
// peers, sorted, are permuted with seed (AuditSeed of that round, fixed
// only when it closed) and each audits the next one around the cycle —
// never its own, and every contribution has one auditor, so suspicion
// cannot raise anyone's odds above the 1 everyone has. Fewer than two
// peers audit nobody.
func PeerAuditAssignment(seed int64, peers []string) map[string]string {
	if len(peers) < 2 {
		return nil
	}
	s := slices.Clone(peers)
	slices.Sort(s)
	perm := data.Permutation(uint64(seed), len(s))
	out := make(map[string]string, len(s))
	for i, j := range perm {
		out[s[j]] = s[perm[(i+1)%len(perm)]]
	}
	return out
}

// lastRound is what the next round's peer audits need of this one: the
// accepted contributions that committed to their state.
func lastRound(p Params, st State, in []Contribution, verdicts []verify.Verdict, contribs []cid.Cid, audits map[string]record.Audit) *LastRound {
	if !p.PeerAudits || p.Audits <= 0 {
		return nil
	}
	_, built := p.Built(st) // the work started there (overlapped rounds: the round before's base)
	l := &LastRound{Round: st.Round, Seed: st.Seed, Base: built, Work: map[string]AuditedWork{}}
	var peers []string
	for i, c := range in {
		rec := c.Record
		if !verdicts[i].Accepted() || rec.Start == nil || rec.End == nil {
			continue
		}
		w := AuditedWork{Contribution: c.Block, Payload: rec.Payload, Start: *rec.Start, End: *rec.End, Vec: verdicts[i].Vec,
			Density: p.DensityFor(st.Scores[rec.Peer])}
		if link, ok := st.Chain[rec.Peer]; ok {
			w.Prev = link.Payload
		}
		if a, ok := audits[rec.Peer]; ok {
			w.Audit = &a
		}
		l.Work[rec.Peer] = w
		peers = append(peers, rec.Peer)
	}
	l.Assigned = PeerAuditAssignment(AuditSeed(st.Seed, contribs), peers)
	return l
}

// auditRound is the audit of target's contribution in l.
func (l *LastRound) auditRound(target string) AuditRound {
	w := l.Work[target]
	r := AuditRound{Round: l.Round, Seed: l.Seed, Base: l.Base, Drawn: []string{target},
		Start: map[string]cid.Cid{target: w.Start}, Prev: map[string]cid.Cid{}, Sent: map[string][]float32{target: w.Vec}, End: map[string]cid.Cid{target: w.End},
		Density: map[string]float64{target: w.Density}}
	if w.Prev.Defined() {
		r.Prev[target] = w.Prev
	}
	return r
}

// PeerAudit is a contributor's part in peer audits: it recomputes, with
// d (its own training set, fetching states from their authors), the
// previous round's contribution l assigns to me and returns the verdict
// to sign into its next contribution; nil when it is assigned none.
func PeerAudit(ctx context.Context, d *DataAuditor, l *LastRound, me string) (*record.PeerVerdict, error) {
	if l == nil {
		return nil, nil
	}
	target, ok := l.Assigned[me]
	if !ok {
		return nil, nil
	}
	w := l.Work[target]
	got, err := d.Audit(ctx, l.auditRound(target))
	if err != nil {
		return nil, err
	}
	a := got[target]
	return &record.PeerVerdict{Round: l.Round, Peer: target, Contribution: w.Contribution, Pass: passed(a, w.Payload, w.End, d.P.AuditTol()),
		PayloadDistance: a.PayloadDistance, EndDistance: a.EndDistance, Fault: a.Fault}, nil
}

// peerFault is a proven fault a referee found, charged to a peer.
type peerFault struct {
	peer, reason, evidence string
}

// settlePeerAudits checks every peer verdict the round's contributions
// carry against the previous round: a verdict on anything but the
// contribution its author was assigned is ignored (it proves nothing
// either way); one that says fail, or disagrees with the coordinator's
// own audit of that contribution, is refereed — by that audit when there
// was one, else by recomputing (referee). The loser takes a proven fault:
// the audited peer (audit), or the author of a verdict the recomputation
// refutes (accusation; a false pass vouches for a cheat). It returns the
// referee evidence by accuser and the faults of peers that have no
// accepted entry in this round to reject.
func settlePeerAudits(ctx context.Context, p Params, st State, in []Contribution, verdicts []verify.Verdict, referee Auditor) (map[string]record.Referee, []peerFault, error) {
	l := st.Last
	if !p.PeerAudits || l == nil {
		return nil, nil, nil
	}
	index := map[string]int{}
	for i, c := range in {
		index[c.Record.Peer] = i
	}
	tol := p.AuditTol()
	refs := map[string]record.Referee{}
	var extra []peerFault
	charge := func(peer, reason, evidence string) {
		if i, ok := index[peer]; ok && verdicts[i].Accepted() {
			verdicts[i].Reason, verdicts[i].Evidence = reason, evidence
			return
		}
		extra = append(extra, peerFault{peer, reason, evidence})
	}
	for i, c := range in {
		v := c.Record.PeerAudit
		if v == nil || !verdicts[i].Accepted() {
			continue
		}
		target, ok := l.Assigned[c.Record.Peer]
		w, known := l.Work[target]
		if !ok || !known || v.Round != l.Round || v.Peer != target || !v.Contribution.Equals(w.Contribution) {
			continue
		}
		var res record.Audit
		switch {
		case w.Audit != nil:
			// The coordinator recomputed it already: that replay referees.
			if v.Pass == passed(*w.Audit, w.Payload, w.End, tol) {
				continue
			}
			res = *w.Audit
		case v.Pass:
			continue // nothing contradicts a pass nobody else checked
		default:
			// A sealer without the data cannot referee: the verdict stays
			// unsettled (nobody is charged), and the record says so by
			// holding no referee.
			if referee == nil || referee.Size() <= 0 {
				continue
			}
			got, err := referee.Audit(ctx, l.auditRound(target))
			if err != nil {
				return nil, nil, err
			}
			a, ok := got[target]
			if !ok {
				continue
			}
			res = a
		}
		refs[c.Record.Peer] = record.Referee{Peer: target, Audit: res}
		ok = passed(res, w.Payload, w.End, tol)
		switch {
		case ok == v.Pass && !ok:
			charge(target, fmt.Sprintf("%s: %s's audit of its round-%d contribution %s, refereed: the replay from %s does not give its work", verify.ReasonAudit, c.Record.Peer, l.Round, w.Contribution, w.Start), w.Start.String())
		case ok != v.Pass:
			charge(c.Record.Peer, fmt.Sprintf("%s: its verdict (pass %v) on %s's round-%d contribution %s is refuted by the replay from %s", verify.ReasonAccusation, v.Pass, target, l.Round, w.Contribution, w.Start), w.Start.String())
		}
	}
	slices.SortFunc(extra, func(a, b peerFault) int { return cmpString(a.peer, b.peer) })
	return refs, extra, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// recordedReferee is the referee evidence a sealed record carries.
type recordedReferee struct {
	rec *record.RoundRecord
}

func (r recordedReferee) Size() int { return 1 }

// Audit gives the recorded recomputation, or none when the sealer did not
// referee (it had no data); a recheck with the data replays instead and
// names a referee the sealer left out.
func (r recordedReferee) Audit(_ context.Context, ar AuditRound) (map[string]record.Audit, error) {
	for _, e := range r.rec.Entries {
		if e.Referee != nil && len(ar.Drawn) == 1 && e.Referee.Peer == ar.Drawn[0] {
			return map[string]record.Audit{e.Referee.Peer: e.Referee.Audit}, nil
		}
	}
	return map[string]record.Audit{}, nil
}

// LastOf rebuilds, from stored blocks, the LastRound that RunWith left
// after sealing rec, for a sealer that resumes from its ledger: seed and
// base are rec's round's shard seed and base model, before is each peer's
// chain link before rec's round (State.Chain then), contribution opens a
// contribution block and payload reads a payload. Nil when peer audits
// are off.
func LastOf(p Params, rec *record.RoundRecord, seed int64, base []float32, before map[string]Link,
	contribution func(cid.Cid) (*record.Contribution, error), payload func(cid.Cid) ([]byte, error)) (*LastRound, error) {
	if !p.PeerAudits || p.Audits <= 0 {
		return nil, nil
	}
	in := make([]Contribution, len(rec.Entries))
	verdicts := make([]verify.Verdict, len(rec.Entries))
	contribs := make([]cid.Cid, len(rec.Entries))
	audits := map[string]record.Audit{}
	for i, e := range rec.Entries {
		contribs[i] = e.Contribution
		if e.Audit != nil {
			audits[e.Peer] = *e.Audit
		}
		if e.Verdict != record.VerdictAccepted {
			in[i] = Contribution{Record: &record.Contribution{Peer: e.Peer}, Block: e.Contribution}
			verdicts[i].Reason = e.Reason
			continue
		}
		c, err := contribution(e.Contribution)
		if err != nil {
			return nil, fmt.Errorf("round %d: %s's contribution %s: %w", rec.Round, e.Peer, e.Contribution, err)
		}
		b, err := payload(e.Payload)
		if err != nil {
			return nil, fmt.Errorf("round %d: %s's payload %s: %w", rec.Round, e.Peer, e.Payload, err)
		}
		if verdicts[i].Vec, err = verify.DecodePayload(b, len(base)); err != nil {
			return nil, fmt.Errorf("round %d: %s's payload %s: %w", rec.Round, e.Peer, e.Payload, err)
		}
		in[i] = Contribution{Record: c, Block: e.Contribution}
	}
	l := lastRound(p, State{Round: rec.Round, Seed: seed, Params: base, Chain: before}, in, verdicts, contribs, audits)
	// The densities the round held its peers to are in its entries (the
	// score table they came from is the record before's).
	for _, e := range rec.Entries {
		if w, ok := l.Work[e.Peer]; ok && e.Density != nil {
			w.Density = *e.Density
			l.Work[e.Peer] = w
		}
	}
	return l, nil
}
