package round

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// RecheckSummary is what a recheck reproduced.
type RecheckSummary struct {
	verify.LedgerSummary
	Entries int // contribution verdicts re-derived
	Sampled int // tier-2 samples whose draw was re-derived
	Scores  int // peer scores recomputed, summed over rounds
	Models  int // round models (and outer states) recomputed
	// Audits counts the recorded tier-3 audits; AuditsReplayed says
	// whether they were replayed on the training set (RecheckOptions.
	// AuditData) or their verdicts taken as recorded.
	Audits         int
	AuditsReplayed bool
}

// Recheck verifies the ledger (verify.Ledger), then replays it from round
// 0 with Run, the function that sealed it: for every entry it re-runs tier
// 0 on the stored contribution block (signature, author, swarm, round,
// payload CID, and for an equivocation both signed blocks), then Run
// re-derives every verdict, weight, norm, the tier-2 sample (taking the
// recorded tier-2 losses as the evidence), every score, the aggregate, the
// outer step, the model and outer-state CIDs and the next seed. It returns
// the first field it cannot reproduce, naming the record, the round and,
// where there is one, the peer.
//
// It needs the manifest's initial model and every accepted payload in
// store. A rejection as unavailable cannot be disproven (the payload may
// have reached this store later) and is taken as recorded.
func Recheck(ctx context.Context, store *storage.Store) (RecheckSummary, error) {
	return RecheckWith(ctx, store, RecheckOptions{})
}

// RecheckOptions are what a recheck may bring beyond the ledger.
type RecheckOptions struct {
	// AuditData, when set, is the training set: every recorded audit is
	// replayed (DataAuditor, from the state blocks in the store) instead
	// of taken as recorded, and the replay must give the recorded audit —
	// a sealer that records a cheat's failed replay as a pass, verdict and
	// model included, is caught only this way.
	AuditData *data.Set
	// AuditDataDir, when AuditData is nil, is a directory holding the
	// swarm's dataset: it is loaded as the manifest's config names it
	// (kind and content hash checked) and used as AuditData.
	AuditDataDir string
}

// RecheckWith is Recheck with options.
func RecheckWith(ctx context.Context, store *storage.Store, opt RecheckOptions) (RecheckSummary, error) {
	sum := RecheckSummary{AuditsReplayed: opt.AuditData != nil}
	ls, m, chain, err := verify.Walk(ctx, store)
	sum.LedgerSummary = ls
	if err != nil {
		return sum, err
	}
	sc, err := config.FromCanonical(m.Config)
	if err != nil {
		return sum, fmt.Errorf("swarm manifest: %w", err)
	}
	p := ParamsOf(sc)
	if opt.AuditData == nil && opt.AuditDataDir != "" {
		if opt.AuditData, _, err = data.Load(DataSpec(sc), opt.AuditDataDir); err != nil {
			return sum, fmt.Errorf("audit data: %w", err)
		}
		sum.AuditsReplayed = true
	}
	n, err := p.NumParams()
	if err != nil {
		return sum, err
	}
	file, err := store.ReadFile(ctx, m.InitialModel)
	if err != nil {
		return sum, fmt.Errorf("cannot recheck: the initial model %s is not in this store: %w", m.InitialModel, err)
	}
	initial, err := ModelVector(p.Model, file)
	if err != nil {
		return sum, fmt.Errorf("initial model %s: %w", m.InitialModel, err)
	}
	st := Genesis(m, initial)
	var replayModel train.Model
	for _, s := range chain {
		rec := s.Record
		where := fmt.Sprintf("record %s (round %d)", s.CID, rec.Round)
		in := make([]Contribution, len(rec.Entries))
		for i, e := range rec.Entries {
			c, err := recheckTier0(ctx, store, ls.Swarm, rec.Round, e, n)
			if err != nil {
				return sum, fmt.Errorf("%s: peer %s: %w", where, e.Peer, err)
			}
			in[i] = c
		}
		var auditor Auditor = recordedAudit{rec}
		var referee Auditor = recordedReferee{rec}
		if opt.AuditData != nil && (rec.AuditSize != nil || st.Last != nil) {
			if replayModel == nil {
				if replayModel, err = train.New(p.Model, p.BatchSize, 1); err != nil {
					return sum, err
				}
				defer replayModel.Close()
			}
			da := &DataAuditor{P: p, Model: replayModel, Train: opt.AuditData, File: store.ReadFile, Audits: 1,
				Payload: func(ctx context.Context, c cid.Cid) ([]byte, error) {
					b, err := store.Get(ctx, c)
					if err != nil {
						return nil, err
					}
					return b.RawData(), nil
				}}
			referee = da
			if rec.AuditSize != nil {
				d := *da
				d.Audits = int(*rec.AuditSize)
				auditor = &d
			}
		}
		out, err := RunWith(ctx, p, st, in, Checks{Tier2: recordedTier2{rec}, Audit: auditor, Referee: referee})
		if err != nil {
			return sum, fmt.Errorf("%s: %w", where, err)
		}
		if err := sameAudits(rec, &out.Record, in, p.AuditTol()); err != nil {
			return sum, fmt.Errorf("%s: %w", where, err)
		}
		if err := sameRecord(rec, &out.Record); err != nil {
			return sum, fmt.Errorf("%s: %w", where, err)
		}
		sum.Entries += len(rec.Entries)
		for _, e := range rec.Entries {
			if e.Tier2 != nil {
				sum.Sampled++
			}
			if e.Audit != nil {
				sum.Audits++
			}
		}
		sum.Scores += len(rec.Scores)
		sum.Models++
		st = out.Next
	}
	return sum, nil
}

// sameRecord compares a sealed record with the one Run recomputed, field
// by field, and names the first that differs.
func sameRecord(got, want *record.RoundRecord) error {
	if len(got.Entries) != len(want.Entries) {
		return fmt.Errorf("records %d entries, recomputed %d", len(got.Entries), len(want.Entries))
	}
	for i, g := range got.Entries {
		w := want.Entries[i]
		if err := sameEntry(g, w); err != nil {
			return fmt.Errorf("peer %s: %w", g.Peer, err)
		}
	}
	if err := sameScores(got.Scores, want.Scores); err != nil {
		return err
	}
	switch {
	case !sameOptional(got.SampleSeed, want.SampleSeed) || !sameOptional(got.SampleSize, want.SampleSize):
		return fmt.Errorf("recorded tier-2 sample (seed %s, size %s), recomputed (seed %s, size %s)",
			optional(got.SampleSeed), optional(got.SampleSize), optional(want.SampleSeed), optional(want.SampleSize))
	case !sameOptional(got.AuditSeed, want.AuditSeed) || !sameOptional(got.AuditSize, want.AuditSize):
		return fmt.Errorf("recorded audit draw (seed %s, size %s), recomputed (seed %s, size %s)",
			optional(got.AuditSeed), optional(got.AuditSize), optional(want.AuditSeed), optional(want.AuditSize))
	case !got.Base.Equals(want.Base):
		return fmt.Errorf("recorded base %s, recomputed %s", got.Base, want.Base)
	case !got.Model.Equals(want.Model):
		return fmt.Errorf("recorded model %s, recomputed %s from the accepted updates", got.Model, want.Model)
	case got.OuterState == nil || !got.OuterState.Equals(*want.OuterState):
		return fmt.Errorf("recorded outer state %v, recomputed %s", got.OuterState, want.OuterState)
	case got.Seed != want.Seed:
		return fmt.Errorf("recorded next seed %d, recomputed %d", got.Seed, want.Seed)
	}
	return nil
}

func sameEntry(g, w record.Entry) error {
	if g.Verdict != record.VerdictAccepted && g.Verdict != record.VerdictRejected {
		return fmt.Errorf("unknown verdict %q", g.Verdict)
	}
	switch {
	case g.Verdict != w.Verdict || verify.Kind(g.Reason) != verify.Kind(w.Reason):
		return fmt.Errorf("recorded %s, rechecked %s", describeVerdict(g.Verdict, g.Reason), describeVerdict(w.Verdict, w.Reason))
	case g.Reason != w.Reason || g.Evidence != w.Evidence:
		return fmt.Errorf("recorded reason %q (evidence %q), rechecked %q (evidence %q)", g.Reason, g.Evidence, w.Reason, w.Evidence)
	case !slices.EqualFunc(deref(g.EvidenceBlocks), deref(w.EvidenceBlocks), cid.Cid.Equals) || (g.EvidenceBlocks == nil) != (w.EvidenceBlocks == nil):
		return fmt.Errorf("recorded evidence blocks %v, rechecked %v", deref(g.EvidenceBlocks), deref(w.EvidenceBlocks))
	case g.Weight != w.Weight:
		return fmt.Errorf("recorded weight %v, the config gives %v", g.Weight, w.Weight)
	case g.Norm != w.Norm:
		return fmt.Errorf("recorded norm %v, rechecked %v", g.Norm, w.Norm)
	case (g.Tier2 == nil) != (w.Tier2 == nil):
		return fmt.Errorf("tier-2 evidence recorded: %v, drawn by the sample: %v", g.Tier2 != nil, w.Tier2 != nil)
	case (g.Audit == nil) != (w.Audit == nil):
		return fmt.Errorf("audit recorded: %v, drawn by the audit seed: %v", g.Audit != nil, w.Audit != nil)
	case (g.Referee == nil) != (w.Referee == nil) || (g.Referee != nil && g.Referee.Peer != w.Referee.Peer):
		return fmt.Errorf("referee recorded: %v, called for by the peer verdict: %v", g.Referee != nil, w.Referee != nil)
	case g.Score != w.Score:
		return fmt.Errorf("recorded score %v, recomputed %v", g.Score, w.Score)
	case !sameOptional(g.Density, w.Density):
		return fmt.Errorf("recorded density %s, the ledger assigns %s", optional(g.Density), optional(w.Density))
	case !g.Contribution.Equals(w.Contribution) || !g.Payload.Equals(w.Payload) || g.Loss != w.Loss || g.Samples != w.Samples:
		return fmt.Errorf("entry does not match its contribution block")
	}
	return nil
}

// recheckTier0 re-runs tier 0 on an entry's stored contribution block and
// returns the contribution Run rechecks.
func recheckTier0(ctx context.Context, store *storage.Store, swarm string, round int64, e record.Entry, elems int) (Contribution, error) {
	c, err := openContribution(ctx, store, e.Contribution, swarm, round, e.Peer)
	if err != nil {
		return Contribution{}, err
	}
	if !c.Payload.Equals(e.Payload) {
		return Contribution{}, fmt.Errorf("contribution %s announces payload %s, the entry %s", e.Contribution, c.Payload, e.Payload)
	}
	in := Contribution{Record: c, Block: e.Contribution}
	switch verify.Kind(e.Reason) {
	case verify.ReasonEquivocation:
		parts := strings.Fields(e.Evidence)
		if len(parts) != 2 || parts[0] == parts[1] {
			return in, fmt.Errorf("equivocation evidence %q does not name two contributions", e.Evidence)
		}
		for _, p := range parts {
			pc, err := cid.Decode(p)
			if err != nil {
				return in, fmt.Errorf("equivocation evidence %q: %w", p, err)
			}
			if _, err := openContribution(ctx, store, pc, swarm, round, e.Peer); err != nil {
				return in, fmt.Errorf("equivocation evidence: %w", err)
			}
		}
		in.Fault, in.Evidence = e.Reason, e.Evidence
		return in, nil
	case verify.ReasonOversized:
		if c.Inline == nil || len(*c.Inline) <= verify.MaxPayloadBytes(elems) {
			return in, fmt.Errorf("recorded %q, but contribution %s carries no payload over %d bytes", e.Reason, e.Contribution, verify.MaxPayloadBytes(elems))
		}
		in.Fault = e.Reason
		return in, nil
	case verify.ReasonUnavailable:
		return in, nil // taken as recorded: Run finds no payload
	}
	if c.Inline != nil {
		in.Payload = *c.Inline
	} else if b, err := store.Get(ctx, c.Payload); err == nil {
		in.Payload = b.RawData()
	} else {
		return in, fmt.Errorf("cannot recheck: payload %s is not in this store", c.Payload)
	}
	return in, nil
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

// sameScores compares a record's score table with the recomputed one.
func sameScores(got, want []record.PeerScore) error {
	if len(got) != len(want) {
		return fmt.Errorf("records %d peer scores, recomputed %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Peer != w.Peer {
			return fmt.Errorf("score table: peer %s where the recomputed table has %s", g.Peer, w.Peer)
		}
		if g.Score != w.Score || g.Accepted != w.Accepted || g.Rejected != w.Rejected || g.LastRound != w.LastRound || !reflect.DeepEqual(counts(g.Rejections), counts(w.Rejections)) || !sameOptional(g.ExcludedUntil, w.ExcludedUntil) {
			return fmt.Errorf("peer %s: recorded score %v (accepted %d, rejected %d), recomputed %v (accepted %d, rejected %d)",
				g.Peer, g.Score, g.Accepted, g.Rejected, w.Score, w.Accepted, w.Rejected)
		}
		if !sameOptional(g.Thinning, w.Thinning) {
			return fmt.Errorf("peer %s: recorded thinning %s, recomputed %s", g.Peer, optional(g.Thinning), optional(w.Thinning))
		}
	}
	return nil
}

func counts(c *[]record.ReasonCount) []record.ReasonCount {
	if c == nil || len(*c) == 0 {
		return nil
	}
	return *c
}

func sameOptional[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func optional[T any](v *T) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("%+v", *v)
}

func describeVerdict(verdict, reason string) string {
	if reason == "" {
		return verdict
	}
	return verdict + " (" + reason + ")"
}

// sameAudits compares the recorded audits with the recomputed ones (the
// same when taken as recorded; the replay's when the recheck replays).
// A replay on another build lands at another distance, so what must agree
// is the start state, the fault, the verdict and the side of the
// tolerance each deciding distance falls on: a pass stays within, a
// failure beyond.
func sameAudits(got, want *record.RoundRecord, in []Contribution, tol float64) error {
	if len(got.Entries) != len(want.Entries) || len(in) != len(got.Entries) {
		return nil // sameRecord names it
	}
	for i, g := range got.Entries {
		w := want.Entries[i]
		if g.Referee != nil && w.Referee != nil {
			if err := sameAudit(g.Peer+"'s referee", g.Referee.Audit, w.Referee.Audit, cid.Undef, cid.Undef, tol); err != nil {
				return err
			}
		}
		if g.Audit == nil || w.Audit == nil {
			continue
		}
		var end cid.Cid
		if e := in[i].Record.End; e != nil {
			end = *e
		}
		if err := sameAudit(g.Peer, *g.Audit, *w.Audit, g.Payload, end, tol); err != nil {
			return err
		}
	}
	return nil
}

// sameAudit is one audit of sameAudits: payload and end are what the
// audited contribution named (cid.Undef: compare distances only).
func sameAudit(who string, a, b record.Audit, payload, end cid.Cid, tol float64) error {
	within := func(d *float64) bool { return d != nil && *d <= tol }
	same := a.Start.Equals(b.Start) && a.Fault == b.Fault && passed(a, payload, end, tol) == passed(b, payload, end, tol)
	if a.PayloadDistance != nil && b.PayloadDistance != nil {
		same = same && within(a.PayloadDistance) == within(b.PayloadDistance)
		// The end state decides only for a payload within the tolerance: past
		// it the audit fails either way, and where a failed payload's end
		// state lands depends on top-k near ties the sent payload does not
		// excuse, which another build may break the other way (seen:
		// TestAuditsToleratesAnotherBuild's flipper at 0.019 against 0).
		if within(a.PayloadDistance) {
			same = same && within(a.EndDistance) == within(b.EndDistance)
		}
	} else {
		same = same && sameCID(a.Payload, b.Payload) && sameCID(a.End, b.End)
	}
	if !same {
		return fmt.Errorf("peer %s: recorded audit (payload %v at %s, end %v at %s, fault %q), replayed (payload %v at %s, end %v at %s, fault %q), tolerance %g",
			who, a.Payload, distance(a.PayloadDistance), a.End, distance(a.EndDistance), a.Fault,
			b.Payload, distance(b.PayloadDistance), b.End, distance(b.EndDistance), b.Fault, tol)
	}
	return nil
}

func distance(d *float64) string {
	if d == nil {
		return "no distance"
	}
	return fmt.Sprintf("%.3g", *d)
}

func sameCID(a, b *cid.Cid) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equals(*b)
}

func deref[T any](p *[]T) []T {
	if p == nil {
		return nil
	}
	return *p
}
