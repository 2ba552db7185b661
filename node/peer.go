package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
)

// Option configures a role (NewCoordinator, NewContributor).
type Option func(*options)

type options struct {
	host host.Host
}

// WithHost runs the role on h instead of a TCP host of its own: a mocknet
// host in tests, or a host the caller configured. The role uses h's
// private key as its identity, does not close h, and ignores the listen
// addresses of its config.
func WithHost(h host.Host) Option { return func(o *options) { o.host = h } }

// base is what every role runs on: identity, host, DHT and gossip, blocks.
type base struct {
	key     crypto.PrivKey
	id      peer.ID
	net     *p2p.Node
	store   *storage.Store
	ex      *storage.Exchange
	log     *slog.Logger
	ownHost bool // close the host on close (not a WithHost one)
	netOpts []p2p.Option
}

// openBase opens the data dir's store and the host (the data dir's
// identity on a TCP host listening on listen, or the WithHost one), and
// starts the DHT, gossip and bitswap on it; ctx bounds their lifetime.
func openBase(ctx context.Context, dataDir string, listen []string, o options, log *slog.Logger, netOpts ...p2p.Option) (*base, error) {
	b := &base{log: log, netOpts: append([]p2p.Option{p2p.WithLogger(log)}, netOpts...)}
	h := o.host
	if h == nil {
		key, err := p2p.LoadOrCreateIdentity(dataDir)
		if err != nil {
			return nil, err
		}
		if h, err = p2p.NewHost(key, listen); err != nil {
			return nil, err
		}
		b.ownHost = true
	}
	b.key = h.Peerstore().PrivKey(h.ID())
	if b.key == nil {
		b.closeHost(h)
		return nil, errors.New("the host has no private key in its peerstore")
	}
	b.id = h.ID()
	store, err := storage.Open(dataDir)
	if err != nil {
		b.closeHost(h)
		return nil, err
	}
	b.store = store
	if err := b.startNet(ctx, h); err != nil {
		store.Close()
		b.closeHost(h)
		return nil, err
	}
	return b, nil
}

func (b *base) closeHost(h host.Host) {
	if b.ownHost {
		h.Close()
	}
}

// startNet starts the DHT, gossip and bitswap on h.
func (b *base) startNet(ctx context.Context, h host.Host, extra ...p2p.Option) error {
	n, err := p2p.New(ctx, h, append(b.netOpts, extra...)...)
	if err != nil {
		return err
	}
	b.net = n
	b.ex = storage.NewExchange(ctx, h, n.DHT, b.store)
	return nil
}

// restartNet restarts the DHT, gossip and bitswap on the same host with
// extra options (a contributor learns the swarm's message limit from the
// manifest it fetched over the first ones).
func (b *base) restartNet(ctx context.Context, extra ...p2p.Option) error {
	h := b.net.Host
	b.ex.Close()
	b.net.Close()
	return b.startNet(ctx, h, extra...)
}

// Addrs are the full multiaddrs (with /p2p/<id>) others can dial.
func (b *base) Addrs() []string {
	var out []string
	for _, a := range b.net.Host.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, b.id))
	}
	return out
}

// ID is the node's peer ID.
func (b *base) ID() peer.ID { return b.id }

func (b *base) close() {
	b.ex.Close()
	b.net.Close()
	b.closeHost(b.net.Host)
	b.store.Close()
}
