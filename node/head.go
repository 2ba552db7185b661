package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/swarmtrain/swarmtrain/node/p2p"
)

// HeadProtocol answers "what is the latest record of this swarm?": a
// joiner or observer asks it of the peer it bootstrapped from.
const HeadProtocol = p2p.HeadProtocol // the resource manager limits it there

// headTimeout bounds one head exchange; the answer is a few hundred bytes.
const headTimeout = 10 * time.Second

// maxHeadBytes caps an answer read from the network.
const maxHeadBytes = 4 << 10

// Head is the answer of the head protocol.
type Head struct {
	Swarm    string   `json:"swarm"`            // swarm ID (manifest CID)
	Manifest string   `json:"manifest"`         // same as Swarm; kept explicit for observers
	Record   string   `json:"record,omitempty"` // CID of the latest round record, "" before round 0 seals
	Round    int64    `json:"round"`            // its round, -1 before round 0 seals
	Addrs    []string `json:"addrs,omitempty"`  // where the answering peer listens
}

// serveHead answers head requests with what current returns.
func serveHead(h host.Host, current func() Head) {
	h.SetStreamHandler(HeadProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(headTimeout))
		_ = json.NewEncoder(s).Encode(current())
	})
}

// askHead asks p for the latest record of its swarm.
func askHead(ctx context.Context, h host.Host, p peer.ID) (Head, error) {
	ctx, cancel := context.WithTimeout(ctx, headTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, HeadProtocol)
	if err != nil {
		return Head{}, fmt.Errorf("asking %s for the swarm head: %w", p, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(headTimeout))
	var hd Head
	if err := json.NewDecoder(io.LimitReader(s, maxHeadBytes)).Decode(&hd); err != nil {
		return Head{}, fmt.Errorf("head from %s: %w", p, err)
	}
	return hd, nil
}
