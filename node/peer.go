package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
)

// base is what every role runs on: identity, host, DHT and gossip, blocks.
type base struct {
	key   crypto.PrivKey
	id    peer.ID
	net   *p2p.Node
	store *storage.Store
	ex    *storage.Exchange
	log   *slog.Logger
}

func openBase(ctx context.Context, dataDir string, listen []string, maxMsg int, log *slog.Logger, appScore func(peer.ID) float64) (*base, error) {
	key, err := p2p.LoadOrCreateIdentity(dataDir)
	if err != nil {
		return nil, err
	}
	id, _ := peer.IDFromPrivateKey(key)
	store, err := storage.Open(dataDir)
	if err != nil {
		return nil, err
	}
	h, err := p2p.NewHost(key, listen)
	if err != nil {
		store.Close()
		return nil, err
	}
	n, err := p2p.New(ctx, h, p2p.WithMaxMessageSize(maxMsg), p2p.WithLogger(log), p2p.WithAppScore(appScore))
	if err != nil {
		h.Close()
		store.Close()
		return nil, err
	}
	return &base{key: key, id: id, net: n, store: store, ex: storage.NewExchange(ctx, h, n.DHT, store), log: log}, nil
}

// Addrs are the full multiaddrs (with /p2p/<id>) others can dial.
func (b *base) Addrs() []string {
	var out []string
	for _, a := range b.net.Host.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, b.id))
	}
	return out
}

func (b *base) close() {
	b.ex.Close()
	b.net.Close()
	b.net.Host.Close()
	b.store.Close()
}
