package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage/record"
)

// fuzzScope is a resource scope that counts what is reserved.
type fuzzScope struct{ held, peak int }

func (s *fuzzScope) ReserveMemory(n int, _ uint8) error {
	s.held += n
	s.peak = max(s.peak, s.held)
	return nil
}
func (s *fuzzScope) ReleaseMemory(n int) { s.held -= n }

// fuzzFrameLimit keeps the fuzzer's frames small; the code paths are the
// same as at the real limit.
const fuzzFrameLimit = 1 << 16

// FuzzEvidence feeds arbitrary bytes to the evidence protocol's reader and
// checker. Nothing a peer sends may crash the coordinator, and:
//   - what the reader accepts is exactly two frames: written back, they are
//     the bytes it consumed;
//   - its reservations balance: after a failed read nothing stays reserved,
//     after a good one exactly what it reports, and it never held more than
//     about twice what arrived plus a chunk per frame;
//   - only two different signed bodies of one signer, one swarm and one
//     round pass as an equivocation.
func FuzzEvidence(f *testing.F) {
	k, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(make([]byte, 64)))
	id, _ := peer.IDFromPrivateKey(k)
	p := testPeer{k, id}
	one := p.contribution(f, 3, fakeModelCID(), 1, []byte("one"))
	two := p.contribution(f, 3, fakeModelCID(), 1, []byte("two"))
	for _, pair := range [][2][]byte{{one, two}, {one, one}, {one, reencoded(f, one)}, {[]byte("a"), []byte("b")}} {
		var seed bytes.Buffer
		_ = writeEvidence(&seed, pair[0], pair[1])
		f.Add(seed.Bytes())
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		scope := &fuzzScope{}
		r := bytes.NewReader(in)
		a, b, reserved, err := readEvidenceFrames(r, fuzzFrameLimit, scope)
		if err != nil {
			if scope.held != 0 {
				t.Fatalf("failed read left %d bytes reserved", scope.held)
			}
			return
		}
		if scope.held != reserved || reserved < len(a)+len(b) {
			t.Fatalf("holds %d reserved, reports %d, for frames of %d and %d bytes", scope.held, reserved, len(a), len(b))
		}
		if scope.peak > 2*(len(a)+len(b))+2*evidenceChunk {
			t.Fatalf("reserved up to %d for frames of %d and %d bytes", scope.peak, len(a), len(b))
		}
		var back bytes.Buffer
		_ = writeEvidence(&back, a, b)
		consumed := len(in) - r.Len()
		if !bytes.Equal(back.Bytes(), in[:consumed]) {
			t.Fatalf("frames written back differ from the %d bytes read", consumed)
		}
		rec, err := checkEquivocation(testSwarm, a, b)
		if err != nil {
			return
		}
		ca, sa, ba, errA := record.OpenSigned[record.Contribution](a)
		cb, sb, bb, errB := record.OpenSigned[record.Contribution](b)
		switch {
		case rec == nil || errA != nil || errB != nil:
			t.Fatal("accepted evidence that does not open")
		case sa != sb || ca.Peer != sa.String() || rec.Peer != ca.Peer:
			t.Fatal("accepted evidence of two signers")
		case ca.Round != cb.Round || ca.Swarm != testSwarm || cb.Swarm != testSwarm:
			t.Fatal("accepted evidence across rounds or swarms")
		case sha256.Sum256(ba) == sha256.Sum256(bb):
			t.Fatal("accepted one signed body twice as an equivocation")
		}
	})
}

// FuzzEvidenceRoundTrip: any two frames within the limit are read back as
// written.
func FuzzEvidenceRoundTrip(f *testing.F) {
	f.Add([]byte("a"), []byte(""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var buf bytes.Buffer
		_ = writeEvidence(&buf, a, b)
		ga, gb, _, err := readEvidenceFrames(&buf, fuzzFrameLimit, &fuzzScope{})
		if len(a) > fuzzFrameLimit || len(b) > fuzzFrameLimit {
			if err == nil {
				t.Fatal("read an over-limit frame")
			}
			return
		}
		if err != nil || !bytes.Equal(ga, a) || !bytes.Equal(gb, b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzGate feeds arbitrary message bytes to tier 0. It must never panic,
// never accept what does not open as a signed contribution of its author,
// and what it accepts it hands on decoded (ValidatorData, the record that
// opens from the bytes), accepts again unchanged as a re-announcement, and
// counts in its memory bounds.
func FuzzGate(f *testing.F) {
	k, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(make([]byte, 64)))
	id, _ := peer.IDFromPrivateKey(k)
	p := testPeer{k, id}
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\xa4dkind"), []byte("\x00\x24\x08\x01\x12\x20"))
	f.Add(p.contribution(f, 0, fakeModelCID(), 1, []byte("ok")), []byte(id))
	f.Add(p.contribution(f, 1, fakeModelCID(), 5, []byte("next")), []byte(id))
	f.Add(p.withVerdict(f, 1, &record.PeerVerdict{Round: 0, Peer: "other", Contribution: fakeModelCID(), Pass: true}), []byte(id))
	f.Fuzz(func(t *testing.T, data, from []byte) {
		g := newRoundGate(testSwarm, 1000)
		g.open(0, fakeModelCID(), 1)
		m := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		if g.validate(context.Background(), peer.ID("x"), m) != pubsub.ValidationAccept {
			return
		}
		rec, signer, err := record.Open[record.Contribution](data)
		if err != nil {
			t.Fatalf("accepted %x, which does not open: %v", data, err)
		}
		if !wellFormedVerdict(rec) {
			t.Fatal("accepted a contribution whose peer verdict is malformed")
		}
		if author, err := peer.IDFromBytes(from); err != nil || author != signer {
			t.Fatal("accepted a contribution not signed by its author")
		}
		ch, ok := m.ValidatorData.(*checked)
		if !ok || ch.rec.Round != rec.Round || ch.rec.Peer != rec.Peer || !bytes.Equal(ch.blk.RawData(), data) {
			t.Fatal("accepted without handing on what it checked")
		}
		if c, _ := recordBlock(data); !c.Cid().Equals(ch.blk.Cid()) {
			t.Fatal("handed on a block whose CID is not its bytes'")
		}
		again := &pubsub.Message{Message: &pb.Message{Data: data, From: from}}
		if g.validate(context.Background(), peer.ID("y"), again) != pubsub.ValidationAccept {
			t.Fatal("the same contribution again was not accepted")
		}
		if peers, held := heldBytes(g, rec.Round); peers != 1 || held != len(data) {
			t.Fatalf("tier 0 holds %d peers, %d bytes for one %d-byte contribution", peers, held, len(data))
		}
		if u := g.usage[rec.Round]; u == nil || u.peers != 1 || u.bytes != len(data) {
			t.Fatalf("tier 0's bounds count %+v for one %d-byte contribution", u, len(data))
		}
	})
}

func fakeModelCID() cid.Cid {
	c, _ := payloadCID([]byte("model"))
	return c
}

// withVerdict is a next-round contribution of p carrying verdict v.
func (p testPeer) withVerdict(t testing.TB, round int64, v *record.PeerVerdict) []byte {
	t.Helper()
	payload := []byte("verdict")
	pc, err := payloadCID(payload)
	if err != nil {
		t.Fatal(err)
	}
	seed := int64(5)
	c := &record.Contribution{Swarm: testSwarm, Round: round, Peer: p.id.String(), Base: fakeModelCID(), Payload: pc, Inline: &payload,
		Codec: "dense", PayloadBytes: int64(len(payload)), Samples: 10, Loss: 1, Created: 1, Seed: &seed, PeerAudit: v}
	blk, err := record.Sign(p.key, c)
	if err != nil {
		t.Fatal(err)
	}
	return blk.RawData()
}

// TestGateRejectsMalformedVerdicts: tier 0 rejects a peer verdict on the
// author's own work, on a round other than the previous one, or with a
// negative distance, and passes a well-formed one.
func TestGateRejectsMalformedVerdicts(t *testing.T) {
	k, _, _ := crypto.GenerateEd25519Key(bytes.NewReader(make([]byte, 64)))
	id, _ := peer.IDFromPrivateKey(k)
	p := testPeer{k, id}
	neg := -1.0
	for _, c := range []struct {
		name string
		v    *record.PeerVerdict
		want pubsub.ValidationResult
	}{
		{"well formed", &record.PeerVerdict{Round: 0, Peer: "other", Contribution: fakeModelCID(), Pass: true}, pubsub.ValidationAccept},
		{"its own", &record.PeerVerdict{Round: 0, Peer: id.String(), Contribution: fakeModelCID(), Pass: true}, pubsub.ValidationReject},
		{"another round", &record.PeerVerdict{Round: 1, Peer: "other", Contribution: fakeModelCID()}, pubsub.ValidationReject},
		{"negative distance", &record.PeerVerdict{Round: 0, Peer: "other", Contribution: fakeModelCID(), PayloadDistance: &neg}, pubsub.ValidationReject},
	} {
		g := newRoundGate(testSwarm, 1000)
		g.open(0, fakeModelCID(), 1)
		if got := g.validate(context.Background(), id, gossipMessage(p.withVerdict(t, 1, c.v), id)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
