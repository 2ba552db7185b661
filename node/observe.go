package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Observation is what an observer learns from a swarm's latest record.
type Observation struct {
	Swarm  string
	Round  int64
	Record cid.Cid
	Scores []record.PeerScore
}

// Observe joins the network as a throwaway peer (fresh key, temporary
// store), asks the bootstrap peer for the swarm's head, fetches the latest
// round record over bitswap, checks its signature against the swarm
// manifest's coordinator, and returns its scores. swarmID may be "" to
// accept whatever swarm the peer serves.
func Observe(ctx context.Context, bootstrap, swarmID string) (Observation, error) {
	var obs Observation
	dir, err := os.MkdirTemp("", "swarmtrain-observer-")
	if err != nil {
		return obs, err
	}
	defer os.RemoveAll(dir)
	o, err := newObserver(ctx, bootstrap, dir)
	if err != nil {
		return obs, err
	}
	defer o.close()
	ex := o.ex
	hd, mc, err := o.head(ctx, bootstrap, swarmID)
	if err != nil {
		return obs, err
	}
	obs.Swarm, obs.Round = hd.Swarm, hd.Round
	if hd.Record == "" {
		return obs, nil // no round sealed yet
	}
	mb, err := ex.Get(ctx, mc)
	if err != nil {
		return obs, fmt.Errorf("swarm manifest %s: %w", mc, err)
	}
	m, _, err := record.OpenBlock[record.SwarmManifest](mb)
	if err != nil {
		return obs, err
	}
	if obs.Record, err = cid.Decode(hd.Record); err != nil {
		return obs, fmt.Errorf("head record %q: %w", hd.Record, err)
	}
	rb, err := ex.Get(ctx, obs.Record)
	if err != nil {
		return obs, fmt.Errorf("round record %s: %w", obs.Record, err)
	}
	rec, signer, err := record.OpenBlock[record.RoundRecord](rb)
	if err != nil {
		return obs, err
	}
	if signer.String() != m.Coordinator {
		return obs, fmt.Errorf("round record %s is signed by %s, not the coordinator %s", obs.Record, signer, m.Coordinator)
	}
	obs.Round, obs.Scores = rec.Round, rec.Scores
	return obs, nil
}

// observer is a throwaway peer (fresh key, a store in a directory of the
// caller's) connected to one swarm peer.
type observer struct {
	h     host.Host
	store *storage.Store
	ex    *storage.Exchange
	peer  peer.ID
}

func newObserver(ctx context.Context, bootstrap, dir string) (*observer, error) {
	ai, err := peer.AddrInfoFromString(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bootstrap, err) // the address; callers name their flag
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"}, p2p.HostConfig{Relay: p2p.RelayOff})
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(dir)
	if err != nil {
		h.Close()
		return nil, err
	}
	o := &observer{h: h, store: store, ex: storage.NewExchange(ctx, h, nil, store), peer: ai.ID}
	if err := h.Connect(ctx, *ai); err != nil {
		o.close()
		return nil, fmt.Errorf("%s: %w", bootstrap, err) // the address; callers name their flag
	}
	return o, nil
}

// head asks the peer for its swarm's head and checks it is swarmID's (any
// swarm when ""); it returns the head and the manifest's CID.
func (o *observer) head(ctx context.Context, bootstrap, swarmID string) (Head, cid.Cid, error) {
	hd, err := askHead(ctx, o.h, o.peer)
	if err != nil {
		return hd, cid.Undef, err
	}
	if swarmID != "" && hd.Swarm != swarmID {
		return hd, cid.Undef, fmt.Errorf("%s serves swarm %s, not %s", bootstrap, hd.Swarm, swarmID)
	}
	mc, err := cid.Decode(hd.Swarm)
	if err != nil {
		return hd, cid.Undef, fmt.Errorf("head names swarm %q: %w", hd.Swarm, err)
	}
	return hd, mc, nil
}

func (o *observer) close() {
	o.ex.Close()
	o.h.Close()
	o.store.Close()
}

// ledgerFetchTimeout bounds fetching one block of the ledger; a block no
// peer serves within it is left out, and the recheck names it.
const ledgerFetchTimeout = 20 * time.Second

// LedgerCopy says what CopyLedger fetched.
type LedgerCopy struct {
	Swarm   string
	Rounds  int
	Blocks  int
	Missing []cid.Cid // blocks no peer served (the recheck will name them)
}

// CopyLedger fetches a swarm's ledger from the peer at bootstrap into a new
// store in dir, so that it can be verified and rechecked there
// (verify.Ledger, round.Recheck) without trusting the peer: the manifest,
// every round record from the head back to round 0, every contribution
// block, payload and piece of equivocation evidence the records name, and
// the heads "swarm" and "ledger", and the initial model (the recheck
// recomputes every later model from it). swarmID may be "" to take
// whatever swarm the peer serves.
func CopyLedger(ctx context.Context, bootstrap, swarmID, dir string) (LedgerCopy, error) {
	var lc LedgerCopy
	o, err := newObserver(ctx, bootstrap, dir)
	if err != nil {
		return lc, err
	}
	defer o.close()
	hd, mc, err := o.head(ctx, bootstrap, swarmID)
	if err != nil {
		return lc, err
	}
	lc.Swarm = hd.Swarm
	get := func(c cid.Cid) (blocks.Block, error) {
		fctx, cancel := context.WithTimeout(ctx, ledgerFetchTimeout)
		defer cancel()
		b, err := o.ex.Get(fctx, c)
		if err != nil {
			lc.Missing = append(lc.Missing, c)
			return nil, err
		}
		lc.Blocks++
		return b, nil
	}
	mb, err := get(mc)
	if err != nil {
		return lc, fmt.Errorf("swarm manifest %s: %w", mc, err)
	}
	m, _, err := record.OpenBlock[record.SwarmManifest](mb)
	if err != nil {
		return lc, fmt.Errorf("swarm manifest %s: %w", mc, err)
	}
	fctx, cancel := context.WithTimeout(ctx, ledgerFetchTimeout)
	_, err = o.ex.File(fctx, m.InitialModel) // blocks are stored as they arrive
	cancel()
	if err != nil {
		lc.Missing = append(lc.Missing, m.InitialModel)
	}
	if err := o.store.SetHead(ctx, storage.HeadSwarm, mc); err != nil {
		return lc, err
	}
	if hd.Record == "" {
		return lc, nil // no round sealed yet
	}
	head, err := cid.Decode(hd.Record)
	if err != nil {
		return lc, fmt.Errorf("head record %q: %w", hd.Record, err)
	}
	for at := &head; at != nil; {
		rb, err := get(*at)
		if err != nil {
			return lc, fmt.Errorf("round record %s: %w", *at, err)
		}
		rec, _, err := record.OpenBlock[record.RoundRecord](rb)
		if err != nil {
			return lc, err
		}
		for _, e := range rec.Entries {
			cb, err := get(e.Contribution)
			if err != nil {
				continue
			}
			if c, _, err := record.OpenBlock[record.Contribution](cb); err == nil && c.Inline == nil {
				_, _ = get(e.Payload)
			}
			if verify.Kind(e.Reason) == verify.ReasonEquivocation {
				for _, f := range strings.Fields(e.Evidence) {
					if c, err := cid.Decode(f); err == nil {
						_, _ = get(c)
					}
				}
			}
		}
		lc.Rounds++
		at = rec.Prev
	}
	return lc, o.store.SetHead(ctx, storage.HeadLedger, head)
}
