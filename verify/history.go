package verify

import (
	"context"

	"github.com/ipfs/go-cid"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// PeerRound is one round of one peer's history, as the ledger records it.
type PeerRound struct {
	Round    int64         `json:"round"`
	Record   string        `json:"record"` // the round record's CID
	Verdict  string        `json:"verdict"`
	Reason   string        `json:"reason,omitempty"`
	Evidence string        `json:"evidence,omitempty"`
	Norm     float64       `json:"norm"`
	Score    float64       `json:"score"` // after this round
	Tier2    *record.Tier2 `json:"tier2,omitempty"`
	Quality  *float64      `json:"tier2_quality,omitempty"`
}

// PeerHistory verifies the ledger in store (see Ledger) and returns every
// round peer has an entry in, oldest first: why each contribution was
// accepted or rejected, with the evidence, and how the score moved.
func PeerHistory(ctx context.Context, store *storage.Store, peer string) ([]PeerRound, error) {
	_, _, chain, err := Walk(ctx, store)
	if err != nil {
		return nil, err
	}
	var out []PeerRound
	for _, s := range chain {
		for _, e := range s.Record.Entries {
			if e.Peer != peer {
				continue
			}
			out = append(out, PeerRoundOf(s.Record, s.CID, e))
		}
	}
	return out, nil
}

// PeerRoundOf is entry e of record rec (stored as rc) as one line of a
// peer's history.
func PeerRoundOf(rec *record.RoundRecord, rc cid.Cid, e record.Entry) PeerRound {
	pr := PeerRound{Round: rec.Round, Record: rc.String(), Verdict: e.Verdict, Reason: e.Reason, Evidence: e.Evidence,
		Norm: e.Norm, Score: e.Score, Tier2: e.Tier2}
	if e.Tier2 != nil {
		q := Quality(*e.Tier2)
		pr.Quality = &q
	}
	return pr
}
