// Package verify checks what a swarm recorded: today, the ledger of round
// records (signatures, links, rounds); the contribution checks and scores of
// the verification tiers grow here.
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// LedgerSummary is what a verified ledger holds.
type LedgerSummary struct {
	Swarm       string
	Name        string
	Coordinator string
	Rounds      int
	Head        cid.Cid
	LastModel   cid.Cid
	Accepted    int
	Rejected    int
	Peers       int
}

// Ledger walks a swarm's ledger in store from its head back to round 0 and
// checks every record: its bytes hash to its CID, its signature verifies
// and is the coordinator's, it names this swarm, its round is one less than
// the next one's, its model is the next record's base, and round 0 starts
// from the manifest's initial model. The first failure is returned, naming
// the record.
func Ledger(ctx context.Context, store *storage.Store) (LedgerSummary, error) {
	s, _, _, err := Walk(ctx, store)
	return s, err
}

// Sealed is one verified round record and its CID.
type Sealed struct {
	CID    cid.Cid
	Record *record.RoundRecord
}

// Walk is Ledger, also returning the manifest and the records in round
// order.
func Walk(ctx context.Context, store *storage.Store) (LedgerSummary, *record.SwarmManifest, []Sealed, error) {
	var s LedgerSummary
	var chain []Sealed
	fail := func(err error) (LedgerSummary, *record.SwarmManifest, []Sealed, error) { return s, nil, nil, err }
	mc, err := store.Head(ctx, storage.HeadSwarm)
	if err != nil {
		return fail(fmt.Errorf("no swarm in this data dir: %w", err))
	}
	mb, err := store.Get(ctx, mc)
	if err != nil {
		return fail(fmt.Errorf("swarm manifest %s: %w", mc, err))
	}
	m, signer, err := record.OpenBlock[record.SwarmManifest](mb)
	if err != nil {
		return fail(err)
	}
	if signer.String() != m.Coordinator {
		return fail(fmt.Errorf("swarm manifest %s: signed by %s, names %s as coordinator", mc, signer, m.Coordinator))
	}
	s.Swarm, s.Name, s.Coordinator = mc.String(), m.Name, m.Coordinator
	head, err := store.Head(ctx, storage.HeadLedger)
	if errors.Is(err, storage.ErrNoHead) {
		return s, m, nil, nil // no round sealed yet
	}
	if err != nil {
		return fail(err)
	}
	s.Head = head
	peers := map[string]bool{}
	var next *record.RoundRecord
	for at := &head; at != nil; {
		c := *at
		b, err := store.Get(ctx, c)
		if err != nil {
			return fail(fmt.Errorf("record %s: %w", c, err))
		}
		rec, signer, err := record.OpenBlock[record.RoundRecord](b)
		if err != nil {
			return fail(err)
		}
		where := fmt.Sprintf("record %s (round %d)", c, rec.Round)
		switch {
		case signer.String() != m.Coordinator:
			return fail(fmt.Errorf("%s: signed by %s, not the coordinator %s", where, signer, m.Coordinator))
		case rec.Swarm != s.Swarm:
			return fail(fmt.Errorf("%s: belongs to swarm %s", where, rec.Swarm))
		case next != nil && rec.Round != next.Round-1:
			return fail(fmt.Errorf("%s: followed by round %d", where, next.Round))
		case next != nil && !rec.Model.Equals(next.Base):
			return fail(fmt.Errorf("%s: its model %s is not round %d's base %s", where, rec.Model, next.Round, next.Base))
		case rec.Prev == nil && rec.Round != 0:
			return fail(fmt.Errorf("%s: has no previous record", where))
		case rec.Prev == nil && !rec.Base.Equals(m.InitialModel):
			return fail(fmt.Errorf("%s: round 0 does not start from the manifest's initial model", where))
		}
		if next == nil {
			s.LastModel = rec.Model
		}
		for _, e := range rec.Entries {
			peers[e.Peer] = true
			if e.Verdict == record.VerdictAccepted {
				s.Accepted++
			} else {
				s.Rejected++
			}
		}
		s.Rounds++
		chain = append(chain, Sealed{c, rec})
		next, at = rec, rec.Prev
	}
	s.Peers = len(peers)
	slices.Reverse(chain)
	return s, m, chain, nil
}
