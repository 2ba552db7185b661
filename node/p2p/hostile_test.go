package p2p

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// The attackers here are test code: peers on a mocknet that send what a
// hostile peer may.

// TestJunkCostsItsSender: a hostile peer publishes messages every honest
// validator rejects. Each costs it score (P4), and after a few it is
// graylisted: its messages, even valid ones, are no longer read. Without
// topic score parameters junk cost nothing.
func TestJunkCostsItsSender(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	scores := map[peer.ID]float64{}
	inspect := WithScoreInspect(func(s map[peer.ID]float64) {
		mu.Lock()
		defer mu.Unlock()
		for p, v := range s {
			scores[p] = v
		}
	}, 50*time.Millisecond)
	mn, nodes := mockSwarm(t, ctx, 2, inspect)
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	honest, hostile := nodes[0], nodes[1]
	name := TopicName("bafy-junk", "contributions")
	ht, err := honest.JoinTopic(name, func(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if strings.HasPrefix(string(m.Data), "junk") {
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ht.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	xt, err := hostile.JoinTopic(name, nil) // it publishes whatever it likes
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the hostile peer to see the honest one in the topic", func() bool { return len(xt.ListPeers()) > 0 })
	score := func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return scores[hostile.Host.ID()]
	}
	_, th := ScoreParams(nil)
	for i := range invalidToGraylist + 1 {
		if err := Publish(ctx, xt, []byte(fmt.Sprintf("junk %d", i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the hostile peer to be graylisted", func() bool { return score() < th.GraylistThreshold })
	t.Logf("after %d junk messages the hostile peer scores %.0f (graylist %v)", invalidToGraylist+1, score(), th.GraylistThreshold)
	if err := Publish(ctx, xt, []byte("valid, but from a graylisted peer")); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	if m, err := sub.Next(rctx); err == nil {
		t.Fatalf("a graylisted peer's message was delivered: %q", m.Data)
	}
}

func TestScoreParamsKeepTheirInvariants(t *testing.T) {
	p, th := ScoreParams(nil)
	if err := validateScoreParams(p, TopicScoreParams(), th); err != nil {
		t.Fatal(err)
	}
	for name, break_ := range map[string]func(*pubsub.TopicScoreParams){
		"positive time in mesh": func(tp *pubsub.TopicScoreParams) { tp.TimeInMeshWeight = 0.01; tp.TimeInMeshCap = 3600 },
		"junk is free":          func(tp *pubsub.TopicScoreParams) { tp.InvalidMessageDeliveriesWeight = 0 },
		"junk never forgotten":  func(tp *pubsub.TopicScoreParams) { tp.InvalidMessageDeliveriesDecay = 1 },
		"junk too cheap":        func(tp *pubsub.TopicScoreParams) { tp.InvalidMessageDeliveriesWeight = -1 },
		"one junk message cuts": func(tp *pubsub.TopicScoreParams) { tp.InvalidMessageDeliveriesWeight = -200 },
		"topic does not count":  func(tp *pubsub.TopicScoreParams) { tp.TopicWeight = 0 },
		"quiet peers penalised": func(tp *pubsub.TopicScoreParams) { tp.MeshMessageDeliveriesWeight = -1 },
	} {
		tp := TopicScoreParams()
		break_(tp)
		if err := validateScoreParams(p, tp, th); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fakeDiscovery is a DHT full of provider records for the namespace: an
// attacker's fakes, each listing many addresses.
type fakeDiscovery struct{ found []peer.AddrInfo }

func (f fakeDiscovery) Advertise(context.Context, string, ...discovery.Option) (time.Duration, error) {
	return time.Hour, nil
}

func (f fakeDiscovery) FindPeers(ctx context.Context, _ string, _ ...discovery.Option) (<-chan peer.AddrInfo, error) {
	ch := make(chan peer.AddrInfo, len(f.found))
	for _, ai := range f.found {
		ch <- ai
	}
	close(ch)
	return ch, nil
}

// countingHost counts the dials it is asked for and the addresses in them.
type countingHost struct {
	host.Host
	dials, addrs atomic.Int64
}

func (h *countingHost) Connect(ctx context.Context, ai peer.AddrInfo) error {
	h.dials.Add(1)
	h.addrs.Add(int64(len(ai.Addrs)))
	return fmt.Errorf("unreachable")
}

// TestDiscoveryDialsAreBounded: one discovery pass over 200 fake provider
// records of 50 addresses each dials a bounded number of peers and
// addresses, not every address of every record.
func TestDiscoveryDialsAreBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, nodes := mockSwarm(t, ctx, 1)
	nd := nodes[0]
	var fakes []peer.AddrInfo
	for i := range 200 {
		var addrs []ma.Multiaddr
		for j := range 50 {
			addrs = append(addrs, ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i/250, i%250, j)))
		}
		fakes = append(fakes, peer.AddrInfo{ID: peer.ID(fmt.Sprintf("fake-%03d", i)), Addrs: addrs})
	}
	ch := &countingHost{Host: nd.Host}
	nd.Host, nd.disc = ch, fakeDiscovery{found: fakes}
	nd.findOnce(ctx, Namespace("bafy-fake"), nil)
	t.Logf("one pass over %d fake records: %d dials, %d addresses", len(fakes), ch.dials.Load(), ch.addrs.Load())
	if d := ch.dials.Load(); d > maxDialsPerFind {
		t.Errorf("%d dials in one pass, bound %d", d, maxDialsPerFind)
	}
	if a := ch.addrs.Load(); a > maxDialsPerFind*maxAddrsPerPeer {
		t.Errorf("%d addresses dialled in one pass, bound %d", a, maxDialsPerFind*maxAddrsPerPeer)
	}
}

// TestDHTKeepsPublicAddressesOutsideLANs: a node with a public address
// keeps only public addresses in its DHT (private ones learnt from
// strangers are dials into someone's LAN) and serves only once reachable;
// a swarm on loopback or a LAN keeps everything.
func TestDHTKeepsPublicAddressesOutsideLANs(t *testing.T) {
	lan := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1"), ma.StringCast("/ip4/192.168.1.5/tcp/1")}
	pub := append(lan, ma.StringCast("/ip4/8.8.8.8/tcp/1"))
	if s := scopeOf(lan); s != ScopeLAN {
		t.Errorf("loopback and LAN addresses: scope %v", s)
	}
	if s := scopeOf(pub); s != ScopePublic {
		t.Errorf("with a public address: scope %v", s)
	}
	if got := publicAddrs(pub); len(got) != 1 || got[0].String() != "/ip4/8.8.8.8/tcp/1" {
		t.Errorf("public filter kept %v", got)
	}
}

// TestCoordinatorAndMeshAreProtected: the connection manager never trims
// the peers a node bootstrapped from (the coordinator, usually), peers it
// protects, or its gossip mesh.
func TestCoordinatorAndMeshAreProtected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mk := func() *Node {
		k, _ := LoadOrCreateIdentity(t.TempDir())
		h, err := NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"}, HostConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		nd, err := New(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		return nd
	}
	coord, member, other := mk(), mk(), mk()
	if err := member.Bootstrap(ctx, []string{addrOf(coord)}); err != nil {
		t.Fatal(err)
	}
	if !member.Host.ConnManager().IsProtected(coord.Host.ID(), bootstrapTag) {
		t.Error("the bootstrap peer is not protected")
	}
	member.Protect(other.Host.ID(), "swarmtrain:coordinator")
	if !member.Host.ConnManager().IsProtected(other.Host.ID(), "swarmtrain:coordinator") {
		t.Error("Protect did not protect")
	}
	name := TopicName("bafy-mesh", "rounds")
	for _, nd := range []*Node{coord, member} {
		tp, err := nd.JoinTopic(name, func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
			return pubsub.ValidationAccept
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the mesh peer to be protected", func() bool {
		return coord.Host.ConnManager().IsProtected(member.Host.ID(), "pubsub:"+name)
	})
}
