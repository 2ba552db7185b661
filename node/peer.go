package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

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
	// paths records hole punches (empty on a WithHost host).
	paths *p2p.Paths
}

// reach is how a role's own host crosses NATs: network.relay, the
// addresses to announce, and the peers to reserve relay slots on.
type reach struct {
	relay     string
	announce  []string
	bootstrap []string
}

// hostConfig turns r into p2p's form; the strings were validated by
// config or the CLI, and an error here names the bad one.
func (r reach) hostConfig(paths *p2p.Paths) (p2p.HostConfig, error) {
	hc := p2p.HostConfig{Relay: r.relay, Paths: paths}
	for _, a := range r.announce {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return hc, fmt.Errorf("announce %s: %w", a, err)
		}
		hc.Announce = append(hc.Announce, m)
	}
	for _, a := range r.bootstrap {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return hc, fmt.Errorf("bootstrap %s: %w", a, err)
		}
		hc.Relays = append(hc.Relays, *ai)
	}
	return hc, nil
}

// openBase opens the data dir's store and the host (the data dir's
// identity on a TCP host listening on listen, or the WithHost one), and
// starts the DHT, gossip and bitswap on it; ctx bounds their lifetime.
func openBase(ctx context.Context, dataDir string, listen []string, r reach, o options, log *slog.Logger, netOpts ...p2p.Option) (*base, error) {
	b := &base{log: log, netOpts: append([]p2p.Option{p2p.WithLogger(log)}, netOpts...), paths: p2p.NewPaths(log)}
	h := o.host
	if h == nil {
		hc, err := r.hostConfig(b.paths)
		if err != nil {
			return nil, err
		}
		key, err := p2p.LoadOrCreateIdentity(dataDir)
		if err != nil {
			return nil, err
		}
		if h, err = p2p.NewHost(key, listen, hc); err != nil {
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

// PeerPath is how this node reaches p now, and whether a hole punch made
// the direct path.
func (b *base) PeerPath(p peer.ID) (p2p.Path, bool) {
	return p2p.PeerPath(b.net.Host.Network(), p), b.paths.HolePunched(p)
}

// ID is the node's peer ID.
func (b *base) ID() peer.ID { return b.id }

func (b *base) close() {
	b.ex.Close()
	b.net.Close()
	b.closeHost(b.net.Host)
	b.store.Close()
}
