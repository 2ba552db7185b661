package node

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// FuzzEvidence feeds arbitrary bytes to the evidence protocol's reader and
// checker: nothing a peer sends may crash the coordinator, and only two
// different contributions signed by one peer may pass.
func FuzzEvidence(f *testing.F) {
	var seed bytes.Buffer
	_ = writeEvidence(&seed, []byte("a"), []byte("b"))
	f.Add(seed.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, c, err := readEvidence(bytes.NewReader(b))
		if err != nil {
			return
		}
		if rec, err := checkEquivocation("swarm", a, c); err == nil && rec == nil {
			t.Fatal("accepted evidence without a contribution")
		}
	})
}

// FuzzGate feeds arbitrary message bytes to tier 0: it must never panic,
// and never accept what does not open as a signed contribution.
func FuzzGate(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\xa4dkind"), []byte("\x00\x24\x08\x01\x12\x20"))
	g := newRoundGate("swarm", 1000)
	g.open(0, fakeModelCID(), 1)
	f.Fuzz(func(t *testing.T, data, from []byte) {
		m := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		if g.validate(context.Background(), peer.ID("x"), m) == pubsub.ValidationAccept {
			t.Fatalf("accepted %x", data)
		}
	})
}

func fakeModelCID() cid.Cid {
	c, _ := payloadCID([]byte("model"))
	return c
}
