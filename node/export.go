package node

import (
	"context"
	"fmt"
	"os"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// ModelOrigin is a model checkpoint and, when the ledger it was looked up
// in names it, the verified round record that produced it: what export
// writes into the file's metadata.
type ModelOrigin struct {
	File     []byte // the stored checkpoint, hashed against its CID
	Swarm    string // the swarm ID (manifest CID); "" when no ledger was found
	Manifest *record.SwarmManifest
	// Record is the round record whose model the file is, and Round its
	// round; Record is cid.Undef for the initial model or a model the
	// ledger does not name.
	Record cid.Cid
	Round  int64
	// Found says the ledger names the model (as a round's model or the
	// swarm's initial model).
	Found bool
	// NoLedger says why the model has no provenance, where there is no
	// verified ledger to look it up in (a contributor's partial copy).
	NoLedger string
}

// ModelOriginIn reads checkpoint c from a stopped node's store and looks
// it up in the store's ledger, which it verifies first (signatures, links).
func ModelOriginIn(ctx context.Context, store *storage.Store, c cid.Cid) (ModelOrigin, error) {
	b, err := store.ReadFile(ctx, c)
	if err != nil {
		return ModelOrigin{}, err
	}
	if got, err := storage.FileCID(b); err != nil || !got.Equals(c) {
		return ModelOrigin{}, fmt.Errorf("model %s does not hash to its CID (got %s): the store is damaged", c, got)
	}
	return originIn(ctx, store, c, b)
}

// FetchModelOrigin fetches checkpoint c over bitswap from the peer at
// bootstrap, as a throwaway peer, and the swarm's round records from the
// head back to the one that produced c. Nothing the peer says is trusted:
// the file is hashed against c and the records are verified as
// verify.Walk verifies a ledger (signed by the coordinator the signed
// manifest names, linked round by round).
func FetchModelOrigin(ctx context.Context, bootstrap string, c cid.Cid) (ModelOrigin, error) {
	dir, err := os.MkdirTemp("", "swarmtrain-export-")
	if err != nil {
		return ModelOrigin{}, err
	}
	defer os.RemoveAll(dir)
	o, err := newObserver(ctx, bootstrap, dir)
	if err != nil {
		return ModelOrigin{}, err
	}
	defer o.close()
	b, err := o.ex.File(ctx, c)
	if err != nil {
		return ModelOrigin{}, fmt.Errorf("fetching %s from %s: %w", c, bootstrap, err)
	}
	if got, err := storage.FileCID(b); err != nil || !got.Equals(c) {
		return ModelOrigin{}, fmt.Errorf("%s sent %d bytes for %s that hash to %s", bootstrap, len(b), c, got)
	}
	// The file is good; its provenance comes from the peer's ledger, and
	// where that cannot be had, the file goes out without it.
	if err := fetchLedgerRecords(ctx, o, bootstrap); err != nil {
		return ModelOrigin{File: b, Round: -1, NoLedger: err.Error()}, nil
	}
	return originIn(ctx, o.store, c, b)
}

// originIn looks checkpoint c (bytes b) up in store's ledger, verified
// whole by verify.Walk. Without a ledger that verifies the model still goes
// out, without provenance, and NoLedger says why.
func originIn(ctx context.Context, store *storage.Store, c cid.Cid, b []byte) (ModelOrigin, error) {
	o := ModelOrigin{File: b, Round: -1}
	s, m, chain, err := verify.Walk(ctx, store)
	if err != nil {
		o.NoLedger = err.Error()
		return o, nil
	}
	o.Swarm, o.Manifest = s.Swarm, m
	if m.InitialModel.Equals(c) {
		o.Found = true
		return o, nil
	}
	for _, sl := range chain {
		if sl.Record.Model.Equals(c) {
			o.Record, o.Round, o.Found = sl.CID, sl.Record.Round, true
			break
		}
	}
	return o, nil
}

// fetchLedgerRecords fetches the swarm manifest and every round record of
// the ledger bootstrap serves into o's store and sets its heads.
func fetchLedgerRecords(ctx context.Context, o *observer, bootstrap string) error {
	hd, mc, err := o.head(ctx, bootstrap, "")
	if err != nil {
		return err
	}
	get := func(c cid.Cid) (blocks.Block, error) {
		fctx, cancel := context.WithTimeout(ctx, ledgerFetchTimeout)
		defer cancel()
		return o.ex.Get(fctx, c) // stored as it arrives, for verify.Walk
	}
	mb, err := get(mc)
	if err != nil {
		return fmt.Errorf("swarm manifest %s from %s: %w", mc, bootstrap, err)
	}
	m, msigner, err := record.OpenBlock[record.SwarmManifest](mb)
	if err != nil {
		return fmt.Errorf("swarm manifest %s from %s: %w", mc, bootstrap, err)
	}
	if err := o.store.SetHead(ctx, storage.HeadSwarm, mc); err != nil {
		return err
	}
	if hd.Record != "" {
		head, err := cid.Decode(hd.Record)
		if err != nil {
			return fmt.Errorf("%s names head record %q: %w", bootstrap, hd.Record, err)
		}
		// Fetch every record from the head back (small blocks, one per
		// round); the walk in originIn verifies them as a whole ledger.
		// Only records the coordinator signed, each an earlier round than
		// the one before: a peer cannot keep the walk going with a chain
		// of its own.
		below := int64(-1)
		for at := &head; at != nil; {
			rb, err := get(*at)
			if err != nil {
				return fmt.Errorf("round record %s from %s: %w", *at, bootstrap, err)
			}
			rec, signer, err := record.OpenBlock[record.RoundRecord](rb)
			if err != nil {
				return err
			}
			if signer != msigner || signer.String() != m.Coordinator || (below >= 0 && rec.Round >= below) {
				return fmt.Errorf("round record %s from %s: round %d signed by %s: not the next older record of swarm %s's coordinator", *at, bootstrap, rec.Round, signer, mc)
			}
			below = rec.Round
			at = rec.Prev
		}
		if err := o.store.SetHead(ctx, storage.HeadLedger, head); err != nil {
			return err
		}
	}
	return nil
}
