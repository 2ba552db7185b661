package node

import (
	"context"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	basicnode "github.com/ipld/go-ipld-prime/node/basicnode"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

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
	b, err := ipld.Encode(out, dagcbor.EncodeOptions{MapSortMode: codec.MapSortMode_None}.Encode)
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
	if err := reportEquivocation(ctx, attackerHost, coord.ID(), orig, dup); err != nil {
		t.Fatal(err)
	}
	self1 := attacker.contribution(t, 0, base, 1, []byte("one"))
	self2 := attacker.contribution(t, 0, base, 1, []byte("two"))
	// One report per peer at a time: retry until the first is done.
	for {
		if err := reportEquivocation(ctx, attackerHost, coord.ID(), self1, self2); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p == honest.id.String() {
				t.Fatal("the coordinator recorded the honest peer as an equivocator")
			}
			if p != attacker.id.String() {
				t.Fatalf("recorded %s", p)
			}
		case <-time.After(time.Second):
			continue
		case <-ctx.Done():
			t.Fatal("the genuine equivocation was never recorded")
		}
		break
	}
	for _, f := range g.takeFaults(0) {
		if f.peer == honest.id.String() {
			t.Errorf("fault against the honest peer: %s", f.reason)
		}
	}
}
