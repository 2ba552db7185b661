package p2p

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

// Relay modes (network.relay, join --relay). Every mode but RelayOff runs
// DCUtR hole punching and AutoNAT v2: a relayed connection is only the way
// to start a direct one.
const (
	// RelayServe: this node is publicly reachable (the coordinator's
	// default). It serves a limited relay v2 service (RelayResources) and
	// AutoNAT, so peers behind NAT learn that they are and reserve a slot
	// with it.
	RelayServe = "serve"
	// RelayUse: this node is behind a NAT. It reserves a relay slot on its
	// bootstrap peers at once and announces the relay addresses.
	RelayUse = "use"
	// RelayAuto: AutoNAT decides (a contributor's default). The node
	// reserves a relay slot on its bootstrap peers once AutoNAT finds it
	// unreachable, and serves as a relay itself once it finds it public.
	RelayAuto = "auto"
	// RelayOff: direct connections only.
	RelayOff = "off"
)

// RelayModes are the accepted values of network.relay, in help order.
var RelayModes = []string{RelayServe, RelayUse, RelayAuto, RelayOff}

// RelayResources are the limits of the relay service a node offers. A
// relay here only carries what it takes to set up a direct connection
// (identify, DCUtR, a few gossip control frames), never payloads or
// checkpoints (libp2p refuses streams on such limited connections unless a
// protocol opts in, and bitswap does not), so the per-connection data cap
// is small and short-lived.
func RelayResources() relayv2.Resources {
	return relayv2.Resources{
		Limit: &relayv2.RelayLimit{
			// A hole punch takes a few round trips; two minutes covers slow
			// links and a retry, after which the relayed connection has done
			// its job or the NAT cannot be punched.
			Duration: 2 * time.Minute,
			// identify (signed peer record, protocols), DCUtR and gossip
			// control messages fit in well under 1 MiB each way.
			Data: 1 << 20,
		},
		// A reservation is refreshed by AutoRelay before it lapses.
		ReservationTTL: time.Hour,
		// A swarm of a few hundred peers, most of them behind NAT, against
		// a coordinator: every member may hold a slot.
		MaxReservations: 512,
		// Circuits to one reserved peer at once: one per peer that is
		// setting up a connection to it; past that, others wait.
		MaxCircuits: 16,
		// libp2p's default relay buffer: relayed traffic is small.
		BufferSize: 2048,
		// A lab or a home NAT puts several contributors behind one address.
		MaxReservationsPerIP: 16,
		// One provider's customers share an ASN; a quarter of the slots
		// keeps one network from taking them all.
		MaxReservationsPerASN: 128,
	}
}

// HostConfig is how a host reaches and is reached across NATs.
type HostConfig struct {
	// Relay is one of RelayModes; "" is RelayAuto.
	Relay string
	// Announce, if not empty, replaces the addresses the host advertises
	// (its listen and observed addresses) — a port forward or a public
	// address the host cannot see. Relay addresses are kept.
	Announce []ma.Multiaddr
	// Relays are the peers to reserve relay slots on (the bootstrap peers).
	Relays []peer.AddrInfo
	// Paths, if set, records hole punches.
	Paths *Paths
}

// natOptions are the libp2p options of c.
func (c HostConfig) natOptions() ([]libp2p.Option, error) {
	var opts []libp2p.Option
	if len(c.Announce) > 0 {
		announce := c.Announce
		opts = append(opts, libp2p.AddrsFactory(func(addrs []ma.Multiaddr) []ma.Multiaddr {
			out := append([]ma.Multiaddr(nil), announce...)
			for _, a := range addrs {
				if isRelayed(a) {
					out = append(out, a)
				}
			}
			return out
		}))
	}
	var hp []holepunch.Option
	if c.Paths != nil {
		hp = append(hp, holepunch.WithTracer(c.Paths))
	}
	switch c.Relay {
	case RelayOff:
		return append(opts, libp2p.DisableRelay()), nil
	case RelayServe:
		return append(opts,
			libp2p.EnableRelayService(relayv2.WithResources(RelayResources())),
			// The operator says this node is public: serve at once rather
			// than after AutoNAT has found peers to confirm it.
			libp2p.ForceReachabilityPublic(),
			libp2p.EnableNATService(),
			libp2p.EnableAutoNATv2(),
			libp2p.EnableHolePunching(hp...),
		), nil
	case RelayUse, RelayAuto, "":
		opts = append(opts,
			libp2p.EnableAutoNATv2(),
			libp2p.EnableHolePunching(hp...),
		)
		if len(c.Relays) > 0 {
			// The swarm's bootstrap peers are its relays: they are who a
			// newcomer can reach, and the coordinator among them serves.
			opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(c.Relays))
		}
		if c.Relay == RelayUse {
			return append(opts, libp2p.ForceReachabilityPrivate()), nil
		}
		// Public after all: help the others through their NATs.
		return append(opts, libp2p.EnableRelayService(relayv2.WithResources(RelayResources()))), nil
	}
	return nil, fmt.Errorf("relay mode %q is not one of %s", c.Relay, strings.Join(RelayModes, ", "))
}

// isRelayed says whether a is a relay (circuit) address.
func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Path is how this node reaches a peer.
type Path string

const (
	// PathDirect: at least one connection without a relay.
	PathDirect Path = "direct"
	// PathRelayed: only relayed (limited) connections: small control
	// streams only, no payloads.
	PathRelayed Path = "relayed"
	// PathUnreachable: no connection.
	PathUnreachable Path = "unreachable"
)

// ConnPath is the path of one connection: relayed when its remote address
// goes through a relay (/p2p-circuit), else direct.
func ConnPath(c network.Conn) Path {
	if isRelayed(c.RemoteMultiaddr()) || c.Stat().Limited {
		return PathRelayed
	}
	return PathDirect
}

// PeerPath is the best path of n's connections to p.
func PeerPath(n network.Network, p peer.ID) Path {
	best := PathUnreachable
	for _, c := range n.ConnsToPeer(p) {
		if ConnPath(c) == PathDirect {
			return PathDirect
		}
		best = PathRelayed
	}
	return best
}

// Paths records the hole punches of a host (it is the host's DCUtR
// tracer) and logs every connection's path as it opens. The zero value is
// not usable: use NewPaths.
type Paths struct {
	log *slog.Logger
	mu  sync.Mutex
	// punched are the peers a hole punch succeeded with.
	punched map[peer.ID]bool
}

// NewPaths returns an empty record that logs to log.
func NewPaths(log *slog.Logger) *Paths {
	if log == nil {
		log = slog.Default()
	}
	return &Paths{log: log, punched: map[peer.ID]bool{}}
}

// Trace implements holepunch.EventTracer.
func (p *Paths) Trace(evt *holepunch.Event) {
	end, ok := evt.Evt.(*holepunch.EndHolePunchEvt)
	if !ok {
		return
	}
	if !end.Success {
		p.log.Info("hole punch failed: the peer stays relayed", "peer", evt.Remote, "after", end.EllapsedTime, "err", end.Error)
		return
	}
	p.mu.Lock()
	p.punched[evt.Remote] = true
	p.mu.Unlock()
	p.log.Info("hole punched: direct connection", "peer", evt.Remote, "after", end.EllapsedTime)
}

// HolePunched says whether a hole punch with peer succeeded.
func (p *Paths) HolePunched(peer peer.ID) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.punched[peer]
}

// Notifee logs each connection as it opens and closes, with its path.
func (p *Paths) Notifee() network.Notifiee {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			p.log.Info("connected", "peer", c.RemotePeer(), "path", ConnPath(c), "addr", c.RemoteMultiaddr(), "dir", c.Stat().Direction)
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			p.log.Debug("disconnected", "peer", c.RemotePeer(), "path", ConnPath(c))
		},
	}
}
