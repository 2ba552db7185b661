package node

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	basicnode "github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// The attackers in this file are test code: peers on a mocknet (or plain
// function calls standing in for one) that send what a hostile peer may.

const testSwarm = "bafy-hostile-test"

// testPeer is a throwaway identity.
type testPeer struct {
	key crypto.PrivKey
	id  peer.ID
}

func newTestPeer(t testing.TB) testPeer {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return testPeer{k, id}
}

// contribution signs a contribution of p for round with an inline payload.
func (p testPeer) contribution(t testing.TB, round int64, base cid.Cid, seed int64, payload []byte) []byte {
	t.Helper()
	pc, err := payloadCID(payload)
	if err != nil {
		t.Fatal(err)
	}
	c := &record.Contribution{Swarm: testSwarm, Round: round, Peer: p.id.String(), Base: base, Payload: pc, Inline: &payload,
		Codec: "dense", PayloadBytes: int64(len(payload)), Samples: 10, Loss: 1, Created: 1, Seed: &seed}
	blk, err := record.Sign(p.key, c)
	if err != nil {
		t.Fatal(err)
	}
	return blk.RawData()
}

// gossipMessage is what gossipsub hands a validator: data published by from.
func gossipMessage(data []byte, author peer.ID) *pubsub.Message {
	return &pubsub.Message{Message: &pb.Message{Data: data, From: []byte(author)}}
}

// reencoded is raw with its envelope's map keys reordered: the same signer,
// signature and signed body, another block. Anyone can make it.
func reencoded(t testing.TB, raw []byte) []byte {
	t.Helper()
	n, err := ipld.Decode(raw, dagcbor.Decode)
	if err != nil {
		t.Fatal(err)
	}
	field := func(k string) datamodel.Node {
		v, err := n.LookupByString(k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	out, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
		for _, k := range []string{"kind", "body", "signer", "sig"} {
			qp.MapEntry(ma, k, qp.Node(field(k)))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ipld.Encode(out, dagcbor.EncodeOptions{AllowLinks: true, MapSortMode: codec.MapSortMode_None}.Encode)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func linkedPeers(t *testing.T, n int) (mocknet.Mocknet, []host.Host) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	hs := make([]host.Host, n)
	for i := range hs {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return mn, hs
}

// TestReencodedContributionCannotFrame: an attacker holding an honest
// peer's signed contribution re-encodes it with the envelope's keys
// reordered and sends both as "equivocation evidence" to the coordinator,
// and relays the copy on gossip. Neither may make a fault of the honest
// peer: the copy is not a record at all.
func TestReencodedContributionCannotFrame(t *testing.T) {
	base := fakeModelCID()
	honest, attacker := newTestPeer(t), newTestPeer(t)
	orig := honest.contribution(t, 0, base, 1, []byte("honest update"))
	dup := reencoded(t, orig)
	if string(dup) == string(orig) {
		t.Fatal("re-encoding changed nothing")
	}
	if _, _, err := record.Open[record.Contribution](dup); err == nil {
		t.Error("the re-encoded copy opens as a record")
	}
	if _, err := checkEquivocation(testSwarm, orig, dup); err == nil {
		t.Error("the original and its re-encoding prove an equivocation")
	}

	// Gossip: the original arrives first, then the attacker relays the copy.
	g := newRoundGate(testSwarm, 1000)
	g.open(0, base, 1)
	if r := g.validate(context.Background(), honest.id, gossipMessage(orig, honest.id)); r != pubsub.ValidationAccept {
		t.Fatalf("honest contribution: %v", r)
	}
	if r := g.validate(context.Background(), attacker.id, gossipMessage(dup, honest.id)); r == pubsub.ValidationAccept {
		t.Error("the re-encoded copy passed tier 0")
	}

	// The evidence stream: the attacker reports the pair, then a genuine
	// equivocation of its own, which tells us its first report was handled.
	_, hs := linkedPeers(t, 2)
	coord, attackerHost := hs[0], hs[1]
	got := make(chan string, 4)
	serveEvidence(coord, testSwarm, func(c *record.Contribution, a, b []byte) {
		g.mu.Lock()
		g.fault(c.Round, equivocationFault(c, a, b))
		g.mu.Unlock()
		got <- c.Peer
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := reportEquivocation(ctx, attackerHost, coord.ID(), orig, dup); !errors.Is(err, errEvidenceRefused) {
		t.Fatalf("framing report: %v, want refused", err)
	}
	self1 := attacker.contribution(t, 0, base, 1, []byte("one"))
	self2 := attacker.contribution(t, 0, base, 1, []byte("two"))
	if err := reportEquivocation(ctx, attackerHost, coord.ID(), self1, self2); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != attacker.id.String() {
			t.Fatalf("recorded %s, not the self-equivocating attacker", p)
		}
	case <-ctx.Done():
		t.Fatal("the genuine equivocation was never recorded")
	}
	for _, f := range g.takeFaults(0) {
		if f.peer == honest.id.String() {
			t.Errorf("fault against the honest peer: %s", f.reason)
		}
	}
}

// loopbackHost is a swarmtrain host (p2p.NewHost: the resource manager
// and its protocol limits) on 127.0.0.1.
func loopbackHost(t testing.TB) host.Host {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.NewHost(k, []string{"/ip4/127.0.0.1/tcp/0"}, p2p.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// hostileHost is a peer that ignores every limit of its own: libp2p with
// no resource manager, as modified software would run.
func hostileHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(&network.NullResourceManager{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// evidenceStats is what the resource manager says the evidence protocol
// holds on h: inbound streams and reserved memory.
func evidenceStats(t testing.TB, h host.Host) (streams int, memory int64) {
	t.Helper()
	err := h.Network().ResourceManager().ViewProtocol(EvidenceProtocol, func(s network.ProtocolScope) error {
		st := s.Stat()
		streams, memory = st.NumStreamsInbound, st.Memory
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return streams, memory
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// floodEvidence opens streams evidence streams from each attacker to coord;
// each sends a frame header claiming the largest frame, then partial bytes
// of it, and stalls there, holding whatever the coordinator allocated.
func floodEvidence(t *testing.T, coord host.Host, attackers []host.Host, streams, sendBytes int) {
	t.Helper()
	ctx := t.Context() // the streams outlive this function
	for _, a := range attackers {
		if err := a.Connect(ctx, peer.AddrInfo{ID: coord.ID(), Addrs: coord.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	junk := make([]byte, sendBytes)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], defaultMaxEvidenceFrame)
	for _, a := range attackers {
		for range streams {
			go func() {
				s, err := a.NewStream(ctx, coord.ID(), EvidenceProtocol)
				if err != nil {
					return
				}
				t.Cleanup(func() { s.Reset() })
				if _, err := s.Write(hdr[:]); err != nil {
					return
				}
				_, _ = s.Write(junk)
			}()
		}
	}
}

// settle waits until f's value has not changed for a while.
func settle(f func() int64) int64 {
	last, stable := f(), 0
	for stable < 5 {
		time.Sleep(200 * time.Millisecond)
		if v := f(); v == last {
			stable++
		} else {
			last, stable = v, 0
		}
	}
	return last
}

// TestEvidenceMemoryPerHostilePeer measures what one hostile peer makes the
// coordinator hold through the evidence protocol: it opens 64 streams (the
// per-peer default libp2p allows) and on each claims a full frame and sends
// most of it, then stalls until the stream deadline. The coordinator must
// read one report per peer at a time, account for what it holds in the
// resource manager, and hold at most p2p.EvidencePeerMemory for it; many
// throwaway identities together at most p2p.EvidenceMemory.
func TestEvidenceMemoryPerHostilePeer(t *testing.T) {
	coord := loopbackHost(t)
	serveEvidence(coord, testSwarm, func(*record.Contribution, []byte, []byte) {})
	before := heapInUse()

	floodEvidence(t, coord, []host.Host{hostileHost(t)}, 64, 900<<10)
	heap := settle(func() int64 { return heapInUse() - before })
	streams, reserved := evidenceStats(t, coord)
	t.Logf("one peer, 64 streams: %d admitted, %.2f MiB reserved in the resource manager, heap grew %.2f MiB",
		streams, float64(reserved)/(1<<20), float64(heap)/(1<<20))
	if streams > p2p.EvidencePeerStreams {
		t.Errorf("%d evidence streams from one peer admitted, limit %d", streams, p2p.EvidencePeerStreams)
	}
	if reserved > p2p.EvidencePeerMemory {
		t.Errorf("%d bytes reserved for one peer, limit %d", reserved, p2p.EvidencePeerMemory)
	}
	// The heap holds what the reader allocated plus yamux's receive
	// buffers; with everything accounted it stays near the limit, where the
	// reader that allocated from the length header held 64 MiB.
	if heap > 2*p2p.EvidencePeerMemory {
		t.Errorf("heap grew %d bytes for one peer; the per-peer limit is %d", heap, p2p.EvidencePeerMemory)
	}

	// Throwaway identities: many peers, each within its own limit, all
	// within the protocol's.
	var many []host.Host
	for range 2 * p2p.EvidenceStreams {
		many = append(many, hostileHost(t))
	}
	floodEvidence(t, coord, many, 2, 900<<10)
	settle(func() int64 { _, m := evidenceStats(t, coord); return m })
	streams, reserved = evidenceStats(t, coord)
	t.Logf("%d peers, 2 streams each: %d admitted, %.2f MiB reserved", len(many)+1, streams, float64(reserved)/(1<<20))
	if streams > p2p.EvidenceStreams || reserved > p2p.EvidenceMemory {
		t.Errorf("%d streams and %d bytes for the evidence protocol; limits %d and %d", streams, reserved, p2p.EvidenceStreams, p2p.EvidenceMemory)
	}
}

// TestOneEvidenceReportPerPeer: on a network without a resource manager
// (mocknet) the handler itself reads one report per peer at a time: a
// second stream while the first is open is reset unread.
func TestOneEvidenceReportPerPeer(t *testing.T) {
	_, hs := linkedPeers(t, 2)
	coord, attacker := hs[0], hs[1]
	serveEvidence(coord, testSwarm, func(*record.Contribution, []byte, []byte) {})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := attacker.NewStream(ctx, coord.ID(), EvidenceProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Reset()
	if _, err := first.Write([]byte{0, 0, 1, 0}); err != nil { // a 256-byte frame, never sent
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	second, err := attacker.NewStream(ctx, coord.ID(), EvidenceProtocol)
	if err != nil {
		t.Fatal(err)
	}
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = second.Write([]byte{0, 0, 0, 1, 'x'})
	if _, err := second.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second concurrent report was not refused: %v", err)
	}
}

// TestEvidenceFromNonMembersAndOtherRounds: with the options the
// coordinator passes, a report from a peer outside the swarm is reset
// unread, and a proof for a round other than the open one or the next is
// dropped after verification.
func TestEvidenceFromNonMembersAndOtherRounds(t *testing.T) {
	_, hs := linkedPeers(t, 3)
	coord, member, outsider := hs[0], hs[1], hs[2]
	got := make(chan int64, 4)
	serveEvidence(coord, testSwarm, func(c *record.Contribution, _, _ []byte) { got <- c.Round },
		withEvidenceFrom(func(p peer.ID) bool { return p == member.ID() }),
		withEvidenceRound(func() int64 { return 5 }))
	eq := newTestPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(from host.Host, round int64) error {
		a := eq.contribution(t, round, fakeModelCID(), 1, []byte("a"))
		b := eq.contribution(t, round, fakeModelCID(), 1, []byte("b"))
		return reportEquivocation(ctx, from, coord.ID(), a, b)
	}
	if err := send(outsider, 5); err == nil {
		t.Error("a report from outside the swarm was taken")
	}
	for _, r := range []int64{1e9, 4} {
		if err := send(member, r); !errors.Is(err, errEvidenceRefused) {
			t.Errorf("report for round %d while round 5 is open: %v, want refused", r, err)
		}
	}
	if err := send(member, 6); err != nil {
		t.Errorf("report for the next round: %v", err)
	}
	select {
	case r := <-got:
		if r != 6 {
			t.Fatalf("recorded a report for round %d", r)
		}
	case <-ctx.Done():
		t.Fatal("the member's report for the next round was not recorded")
	}
	select {
	case r := <-got:
		t.Fatalf("recorded a second report, for round %d", r)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestTopicMembers: the evidence stream's membership test knows the peers
// subscribed to the swarm's topics, and no one else.
func TestTopicMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, hs := linkedPeers(t, 3)
	var nodes []*p2p.Node
	for _, h := range hs {
		nd, err := p2p.New(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		nodes = append(nodes, nd)
	}
	name := p2p.TopicName(testSwarm, topicContributions)
	for _, nd := range nodes[:2] {
		tp, err := nd.JoinTopic(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	member := topicMembers(nodes[0].PubSub, name, p2p.TopicName(testSwarm, topicRounds))
	deadline := time.Now().Add(10 * time.Second)
	for !member(hs[1].ID()) {
		if time.Now().After(deadline) {
			t.Fatal("a subscribed peer is not a member")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if member(hs[2].ID()) {
		t.Error("a connected peer outside the topics is a member")
	}
}
