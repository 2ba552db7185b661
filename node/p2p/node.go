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
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	dutil "github.com/libp2p/go-libp2p/p2p/discovery/util"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
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
	disc   discovery.Discovery
	cfg    config
	ctx    context.Context // the node's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu           sync.Mutex
	relayedAgain map[peer.ID]int // relayAgain's tries per peer
}

// Option configures New.
type Option func(*config)

type config struct {
	maxMessageBytes int
	appScore        func(peer.ID) float64
	findInterval    time.Duration
	log             *slog.Logger
	scope           NetworkScope
	inspect         func(map[peer.ID]float64)
	inspectEvery    time.Duration
}

// Defaults of New.
const (
	defaultMaxMessageBytes = DefaultMaxMessageBytes
	// How often discovery looks for new swarm members once it has some: a
	// new peer is found within this time.
	defaultFindInterval = 10 * time.Second
	// maxDialsPerFind bounds the peers one discovery pass dials: the DHT
	// returns whatever providers records hold, and a flood of fake records
	// would otherwise make every member dial every fake (dial
	// amplification), or fill its connections with an eclipsing set. Real
	// members are found over a few passes.
	maxDialsPerFind = 8
	// maxAddrsPerPeer bounds the addresses dialled for one found peer: a
	// record listing hundreds of addresses points our dials at a victim.
	maxAddrsPerPeer = 8
	// discoveryDialTimeout bounds one dial of a found peer.
	discoveryDialTimeout = 10 * time.Second
	// validatorTimeout bounds one message's validation. Tier 0 takes a few
	// milliseconds on a 1 MiB contribution; a validation queued longer than
	// this is behind a flood, and its message is dropped, not delivered
	// late. Validators check their context before expensive work.
	validatorTimeout = 2 * time.Second
	// validatorConcurrency bounds concurrent validations per topic: each
	// may decode a megabyte, and validation is CPU bound, so more than a
	// few per core only adds memory. Past it, messages are dropped unscored.
	validatorConcurrency = 32
	// validateThrottle bounds concurrent validations across all topics.
	validateThrottle = 128
)

// NetworkScope says which addresses a node's DHT keeps and serves.
type NetworkScope int

const (
	// ScopeAuto is ScopeLAN when none of the host's addresses is public,
	// else ScopePublic.
	ScopeAuto NetworkScope = iota
	// ScopeLAN keeps every address (loopback, private, test networks) and
	// serves the DHT: every member is in one private network.
	ScopeLAN
	// ScopePublic keeps only public addresses, queries and routes only
	// peers with one, and serves the DHT only once reachable (ModeAuto):
	// private addresses learnt from strangers are dials into someone's LAN.
	ScopePublic
)

// WithScoreInspect has gossipsub report every peer's score every period
// (tests and diagnostics).
func WithScoreInspect(f func(map[peer.ID]float64), period time.Duration) Option {
	return func(c *config) { c.inspect, c.inspectEvery = f, period }
}

// WithMaxMessageSize caps gossip messages.
func WithMaxMessageSize(n int) Option { return func(c *config) { c.maxMessageBytes = n } }

// WithAppScore feeds an application-specific score (verification results)
// into gossipsub's peer score.
func WithAppScore(f func(peer.ID) float64) Option { return func(c *config) { c.appScore = f } }

// WithFindInterval sets how often discovery re-queries the DHT.
func WithFindInterval(d time.Duration) Option { return func(c *config) { c.findInterval = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// New starts the DHT (/swarmtrain prefix) and gossipsub on h. ctx bounds
// their lifetime; Close ends them sooner. h may be a real host or a mocknet
// one.
func New(ctx context.Context, h host.Host, opts ...Option) (*Node, error) {
	cfg := config{maxMessageBytes: defaultMaxMessageBytes, findInterval: defaultFindInterval, log: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.scope == ScopeAuto {
		cfg.scope = scopeOf(h.Addrs())
	}
	ctx, cancel := context.WithCancel(ctx)
	kad, err := dht.New(h, dhtOptions(cfg.scope)...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dht: %w", err)
	}
	params, thresholds := ScoreParams(cfg.appScore)
	if err := validateScoreParams(params, TopicScoreParams(), thresholds); err != nil {
		cancel()
		kad.Close()
		return nil, fmt.Errorf("gossipsub score parameters: %w", err)
	}
	psOpts := []pubsub.Option{
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithMaxMessageSize(cfg.maxMessageBytes),
		pubsub.WithPeerScore(params, thresholds),
		pubsub.WithValidateThrottle(validateThrottle),
	}
	if cfg.inspect != nil {
		psOpts = append(psOpts, pubsub.WithPeerScoreInspect(cfg.inspect, cfg.inspectEvery))
	}
	ps, err := pubsub.NewGossipSub(ctx, h, psOpts...)
	if err != nil {
		cancel()
		kad.Close()
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	return &Node{Host: h, DHT: kad, PubSub: ps, disc: drouting.NewRoutingDiscovery(kad), cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// scopeOf is ScopeLAN unless one of addrs is public.
func scopeOf(addrs []ma.Multiaddr) NetworkScope {
	for _, a := range addrs {
		if manet.IsPublicAddr(a) {
			return ScopePublic
		}
	}
	return ScopeLAN
}

func dhtOptions(scope NetworkScope) []dht.Option {
	opts := []dht.Option{dht.ProtocolPrefix(ProtocolPrefix)}
	if scope == ScopeLAN {
		// Swarms on a LAN, loopback or a test network: keep every address,
		// and serve (AutoNAT would call every such node unreachable).
		return append(opts,
			dht.Mode(dht.ModeServer),
			dht.AddressFilter(func(a []ma.Multiaddr) []ma.Multiaddr { return a }),
			dht.QueryFilter(func(any, peer.AddrInfo) bool { return true }),
			dht.RoutingTableFilter(func(any, peer.ID) bool { return true }),
		)
	}
	return append(opts,
		dht.Mode(dht.ModeAuto),
		dht.AddressFilter(publicAddrs),
		dht.QueryFilter(dht.PublicQueryFilter),
		dht.RoutingTableFilter(dht.PublicRoutingTableFilter),
	)
}

// publicAddrs keeps the public addresses of addrs.
func publicAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := addrs[:0:0]
	for _, a := range addrs {
		if manet.IsPublicAddr(a) {
			out = append(out, a)
		}
	}
	return out
}

// Protect keeps the connection manager from trimming connections to p
// (tag says why: "swarmtrain:coordinator"). A contributor protects its
// coordinator, so a flood of connections cannot cut it off from the swarm.
// Gossipsub protects its mesh peers itself.
func (n *Node) Protect(p peer.ID, tag string) { n.Host.ConnManager().Protect(p, tag) }

// bootstrapTag protects the peers a node bootstrapped from: the swarm's
// entry points (usually the coordinator).
const bootstrapTag = "swarmtrain:bootstrap"

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
		n.Protect(ai.ID, bootstrapTag)
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
	dials := 0
	for ai := range ch {
		if ai.ID == n.Host.ID() || len(ai.Addrs) == 0 || n.Host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if n.Host.Network().Connectedness(ai.ID) == network.Limited && !n.relayAgain(ai.ID) {
			continue
		}
		// Past the budget, or with connections enough that the connection
		// manager would trim new ones, drain the channel without dialling.
		if dials >= maxDialsPerFind || len(n.Host.Network().Peers()) >= connLowWater {
			continue
		}
		dials++
		if len(ai.Addrs) > maxAddrsPerPeer {
			ai.Addrs = ai.Addrs[:maxAddrsPerPeer]
		}
		dctx, dcancel := context.WithTimeout(fctx, discoveryDialTimeout)
		err := n.Host.Connect(dctx, ai)
		dcancel()
		if err != nil {
			n.cfg.log.Debug("discovery: connect", "peer", ai.ID, "err", err)
			continue
		}
		if found != nil {
			found(ai.ID)
		}
	}
}

// Hole punches are started by the peer that accepts a relayed connection
// (DCUtR), and only once it knows a public address of its own: a relayed
// connection that arrived earlier — a newcomer's first seconds — is never
// upgraded. A peer reached only through a relay for relayAgainAfter is
// therefore dialled through the relay again (the old circuit closed) so
// that the other side tries once more, at most maxRelayAgain times: a NAT
// that cannot be punched (symmetric) leaves the peer relayed.
const (
	relayAgainAfter = 10 * time.Second
	maxRelayAgain   = 3
)

// relayAgain closes the relayed connections to p when it is time to try
// a hole punch again, and says whether it did.
func (n *Node) relayAgain(p peer.ID) bool {
	conns := n.Host.Network().ConnsToPeer(p)
	for _, c := range conns {
		if ConnPath(c) == PathDirect || time.Since(c.Stat().Opened) < relayAgainAfter {
			return false
		}
	}
	n.mu.Lock()
	if n.relayedAgain == nil {
		n.relayedAgain = map[peer.ID]int{}
	}
	tries := n.relayedAgain[p]
	if tries < maxRelayAgain {
		n.relayedAgain[p]++
	}
	n.mu.Unlock()
	if tries >= maxRelayAgain {
		return false
	}
	n.cfg.log.Info("still relayed: dialling through the relay again for a hole punch", "peer", p, "try", tries+1)
	for _, c := range conns {
		c.Close()
	}
	return true
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

// JoinTopic joins a gossipsub topic with a validator and the swarm topics'
// score parameters (TopicScoreParams). Every topic has a validator, run
// with validatorTimeout and validatorConcurrency: v nil means this node is
// the topic's only publisher (a coordinator's rounds topic), and messages
// authored by anyone else are rejected.
func (n *Node) JoinTopic(name string, v pubsub.ValidatorEx) (*pubsub.Topic, error) {
	if v == nil {
		self := n.Host.ID()
		v = func(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
			if author, err := peer.IDFromBytes(m.From); err != nil || author != self {
				return pubsub.ValidationReject
			}
			return pubsub.ValidationAccept
		}
	}
	if err := n.PubSub.RegisterTopicValidator(name, v,
		pubsub.WithValidatorTimeout(validatorTimeout),
		pubsub.WithValidatorConcurrency(validatorConcurrency)); err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, err)
	}
	t, err := n.PubSub.Join(name)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, err)
	}
	if err := t.SetScoreParams(TopicScoreParams()); err != nil {
		t.Close()
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
