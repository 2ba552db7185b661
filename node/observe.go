package node

import (
	"context"
	"fmt"
	"os"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
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
	ai, err := peer.AddrInfoFromString(bootstrap)
	if err != nil {
		return obs, fmt.Errorf("--bootstrap %s: %w", bootstrap, err)
	}
	dir, err := os.MkdirTemp("", "swarmtrain-observer-")
	if err != nil {
		return obs, err
	}
	defer os.RemoveAll(dir)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return obs, err
	}
	h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"})
	if err != nil {
		return obs, err
	}
	defer h.Close()
	store, err := storage.Open(dir)
	if err != nil {
		return obs, err
	}
	defer store.Close()
	ex := storage.NewExchange(ctx, h, nil, store)
	defer ex.Close()
	if err := h.Connect(ctx, *ai); err != nil {
		return obs, fmt.Errorf("--bootstrap %s: %w", bootstrap, err)
	}
	hd, err := askHead(ctx, h, ai.ID)
	if err != nil {
		return obs, err
	}
	if swarmID != "" && hd.Swarm != swarmID {
		return obs, fmt.Errorf("%s serves swarm %s, not %s", bootstrap, hd.Swarm, swarmID)
	}
	obs.Swarm, obs.Round = hd.Swarm, hd.Round
	if hd.Record == "" {
		return obs, nil // no round sealed yet
	}
	mc, err := cid.Decode(hd.Swarm)
	if err != nil {
		return obs, fmt.Errorf("head names swarm %q: %w", hd.Swarm, err)
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
