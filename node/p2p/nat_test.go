package p2p

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

func natHost(t *testing.T, hc HostConfig) host.Host {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"}, hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestRelayedPeerGetsNoPayloadStreams: a peer reached only through a relay
// (the coordinator's relay service, a reservation made by RelayUse) is
// PathRelayed, and a stream of a protocol that did not opt into limited
// connections — bitswap, every payload and checkpoint — is refused on it;
// only once a direct connection exists does the stream open.
func TestRelayedPeerGetsNoPayloadStreams(t *testing.T) {
	relay := natHost(t, HostConfig{Relay: RelayServe})
	relayInfo := peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}
	behind := natHost(t, HostConfig{Relay: RelayUse, Relays: []peer.AddrInfo{relayInfo}})
	other := natHost(t, HostConfig{Relay: RelayAuto})

	const payload = protocol.ID("/swarmtrain/test-payload/1")
	behind.SetStreamHandler(payload, func(s network.Stream) { s.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// AutoRelay reserves a slot on the static relay. It announces circuit
	// addresses only through public relays, so on loopback the test
	// builds the address and dials it until the reservation exists.
	circuit, err := ma.NewMultiaddr(relay.Addrs()[0].String() + "/p2p/" + relay.ID().String() + "/p2p-circuit")
	if err != nil {
		t.Fatal(err)
	}
	for {
		err := other.Connect(ctx, peer.AddrInfo{ID: behind.ID(), Addrs: []ma.Multiaddr{circuit}})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("connect through the relay: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		other.Network().(*swarm.Swarm).Backoff().Clear(behind.ID())
	}
	if got := PeerPath(other.Network(), behind.ID()); got != PathRelayed {
		t.Fatalf("path over a relay = %s, want relayed", got)
	}
	// libp2p holds such a stream until a direct connection appears (DCUtR
	// makes one where it can); with none, it fails.
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	_, err = other.NewStream(sctx, behind.ID(), payload)
	scancel()
	if err == nil {
		t.Fatal("a payload stream opened over a relayed connection")
	}
	if got := PeerPath(other.Network(), peer.ID("nobody")); got != PathUnreachable {
		t.Fatalf("path to an unknown peer = %s, want unreachable", got)
	}
	// A direct path: the same stream opens, and the path says so.
	t0 := time.Now()
	if err := behind.Connect(network.WithForceDirectDial(ctx, "test"), peer.AddrInfo{ID: other.ID(), Addrs: other.Network().ListenAddresses()}); err != nil {
		t.Fatalf("direct connect after %v: %v", time.Since(t0), err)
	}
	if got := PeerPath(other.Network(), behind.ID()); got != PathDirect {
		t.Fatalf("path with a direct connection = %s, want direct", got)
	}
	s, err := other.NewStream(ctx, behind.ID(), payload)
	if err != nil {
		t.Fatalf("payload stream over the direct connection: %v", err)
	}
	s.Close()
}

func TestUnknownRelayModeIsRefused(t *testing.T) {
	k, _, _ := crypto.GenerateEd25519Key(nil)
	_, err := NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"}, HostConfig{Relay: "sometimes"})
	if err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Fatalf("err = %v, want one naming the mode", err)
	}
}
