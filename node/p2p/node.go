package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	dutil "github.com/libp2p/go-libp2p/p2p/discovery/util"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// ProtocolPrefix keeps swarmtrain's DHT apart from the public IPFS DHT.
const ProtocolPrefix = "/swarmtrain"

// Namespace is the discovery namespace of a swarm.
func Namespace(swarmID string) string { return "swarmtrain/" + swarmID }

// TopicName is the gossipsub topic of kind (contributions, rounds) in a swarm.
func TopicName(swarmID, kind string) string {
	return fmt.Sprintf("/swarmtrain/%s/%s/1", swarmID, kind)
}

// Node is a started host with its DHT and gossipsub.
type Node struct {
	Host   host.Host
	DHT    *dht.IpfsDHT
	PubSub *pubsub.PubSub
	disc   *drouting.RoutingDiscovery
	cfg    config
	ctx    context.Context // the node's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Option configures New.
type Option func(*config)

type config struct {
	maxMessageBytes int
	appScore        func(peer.ID) float64
	findInterval    time.Duration
	log             *slog.Logger
}

// Defaults of New.
const (
	// gossipsub's own default: payloads above the inline limit go by CID.
	defaultMaxMessageBytes = 1 << 20
	// How often discovery looks for new swarm members once it has some: a
	// new peer is found within this time.
	defaultFindInterval = 10 * time.Second
)

// WithMaxMessageSize caps gossip messages.
func WithMaxMessageSize(n int) Option { return func(c *config) { c.maxMessageBytes = n } }

// WithAppScore feeds an application-specific score (verification results)
// into gossipsub's peer score.
func WithAppScore(f func(peer.ID) float64) Option { return func(c *config) { c.appScore = f } }

// WithFindInterval sets how often discovery re-queries the DHT.
func WithFindInterval(d time.Duration) Option { return func(c *config) { c.findInterval = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// New starts the DHT (server mode, /swarmtrain prefix) and gossipsub on h.
// ctx bounds their lifetime; Close ends them sooner. h may be a real host or
// a mocknet one.
func New(ctx context.Context, h host.Host, opts ...Option) (*Node, error) {
	cfg := config{maxMessageBytes: defaultMaxMessageBytes, findInterval: defaultFindInterval, log: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	kad, err := dht.New(h,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(ProtocolPrefix),
		// Swarms run on LANs, loopback and test networks: keep every address.
		dht.AddressFilter(func(a []ma.Multiaddr) []ma.Multiaddr { return a }),
		dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
		dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dht: %w", err)
	}
	params, thresholds := ScoreParams(cfg.appScore)
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithMaxMessageSize(cfg.maxMessageBytes),
		pubsub.WithPeerScore(params, thresholds),
	)
	if err != nil {
		cancel()
		kad.Close()
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	return &Node{Host: h, DHT: kad, PubSub: ps, disc: drouting.NewRoutingDiscovery(kad), cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// Bootstrap connects to the given peers and refreshes the DHT. It fails,
// naming the addresses, only when none of them can be reached.
func (n *Node) Bootstrap(ctx context.Context, addrs []string) error {
	var errs []error
	ok := 0
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %s: %w (want /ip4/.../tcp/.../p2p/<peer-id>)", a, err))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = n.Host.Connect(cctx, *ai)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %s: %w", a, err))
			continue
		}
		ok++
	}
	if len(addrs) > 0 && ok == 0 {
		return fmt.Errorf("no bootstrap peer reachable: %w", errors.Join(errs...))
	}
	if ok > 0 {
		<-n.DHT.ForceRefresh()
	}
	return nil
}

// Discover advertises this node under the swarm's namespace and keeps
// looking for the swarm's other members, connecting to each one found,
// until ctx ends or the node closes. found, if not nil, is called for
// every newly connected peer.
func (n *Node) Discover(ctx context.Context, swarmID string, found func(peer.ID)) {
	ns := Namespace(swarmID)
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(n.ctx, cancel) // Close ends discovery too
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		dutil.Advertise(ctx, n.disc, ns)
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		interval := time.Second // fast at first, then every findInterval
		for {
			n.findOnce(ctx, ns, found)
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
			interval = min(2*interval, n.cfg.findInterval)
		}
	}()
}

func (n *Node) findOnce(ctx context.Context, ns string, found func(peer.ID)) {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ch, err := n.disc.FindPeers(fctx, ns)
	if err != nil {
		n.cfg.log.Debug("discovery", "namespace", ns, "err", err)
		return
	}
	for ai := range ch {
		if ai.ID == n.Host.ID() || len(ai.Addrs) == 0 || n.Host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if err := n.Host.Connect(fctx, ai); err != nil {
			n.cfg.log.Debug("discovery: connect", "peer", ai.ID, "err", err)
			continue
		}
		if found != nil {
			found(ai.ID)
		}
	}
}

// Reconnect dials every address not connected now, first forgetting the
// dial backoff to it: a peer that restarted on the same address (a
// coordinator resuming) is reachable again at once, not after the backoff.
func (n *Node) Reconnect(ctx context.Context, addrs []string) {
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil || n.Host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if sw, ok := n.Host.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(ai.ID)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := n.Host.Connect(cctx, *ai); err != nil {
			n.cfg.log.Debug("reconnect", "addr", a, "err", err)
		}
		cancel()
	}
}

// JoinTopic joins a gossipsub topic with a validator (nil for none).
func (n *Node) JoinTopic(name string, v pubsub.ValidatorEx) (*pubsub.Topic, error) {
	if v != nil {
		if err := n.PubSub.RegisterTopicValidator(name, v); err != nil {
			return nil, fmt.Errorf("topic %s: %w", name, err)
		}
	}
	t, err := n.PubSub.Join(name)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, err)
	}
	return t, nil
}

// Publish sends a copy of data on t: gossipsub keeps the slice it is given,
// so the caller may reuse data at once.
func Publish(ctx context.Context, t *pubsub.Topic, data []byte) error {
	return t.Publish(ctx, append([]byte(nil), data...))
}

// Close stops discovery, gossipsub and the DHT (not the host).
func (n *Node) Close() error {
	n.cancel()
	n.wg.Wait()
	return n.DHT.Close()
}
