package record

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

func key(t testing.TB) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

func someCID(s string) cid.Cid {
	c, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte(s))
	return c
}

func sampleRound() *RoundRecord {
	prev := someCID("prev")
	return &RoundRecord{
		Swarm: "bafyswarm", Round: 7, Prev: &prev, Seed: 99, Base: someCID("base"), Model: someCID("model"),
		Entries: []Entry{{Peer: "p1", Contribution: someCID("c1"), Payload: someCID("x1"), Verdict: "accepted", Score: 0.5, Weight: 1, Norm: 2.5, Loss: 0.3, Samples: 1280},
			{Peer: "p2", Contribution: someCID("c2"), Payload: someCID("x2"), Verdict: "rejected", Reason: "non-finite", Evidence: "coordinate 3 is NaN"}},
		Scores: []PeerScore{{Peer: "p1", Score: 0.5, Accepted: 3, LastRound: 7}},
		Sealed: 1234,
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	k, id := key(t)
	inline := []byte{1, 2, 3}
	contrib := &Contribution{Swarm: "s", Round: 3, Peer: id.String(), Base: someCID("b"), Payload: someCID("p"), Inline: &inline, Codec: "topk+int8", PayloadBytes: 3, Samples: 1280, Loss: 0.25, Created: 5}
	b, err := Sign(k, contrib)
	if err != nil {
		t.Fatal(err)
	}
	got, signer, err := OpenBlock[Contribution](b)
	if err != nil {
		t.Fatal(err)
	}
	if signer != id || got.Round != 3 || string(*got.Inline) != string(inline) || got.Loss != 0.25 || !got.Base.Equals(contrib.Base) {
		t.Fatalf("round trip: %+v by %s", got, signer)
	}
	rb, _ := Sign(k, sampleRound())
	r, _, err := OpenBlock[RoundRecord](rb)
	if err != nil {
		t.Fatal(err)
	}
	if r.Prev == nil || r.OuterState != nil || len(r.Entries) != 2 || r.Entries[1].Reason != "non-finite" {
		t.Fatalf("round record: %+v", r)
	}
	if b.Cid().Prefix().Codec != cid.DagCBOR || b.Cid().Version() != 1 {
		t.Fatalf("cid %s", b.Cid())
	}
}

func TestAlteredRecordsAreRefused(t *testing.T) {
	k, _ := key(t)
	b, _ := Sign(k, sampleRound())
	var s Signed
	if _, err := ipld.Unmarshal(b.RawData(), dagcbor.Decode, &s, typeOf("Signed")); err != nil {
		t.Fatal(err)
	}
	reencode := func(s Signed) []byte {
		raw, err := ipld.Marshal(dagcbor.Encode, &s, typeOf("Signed"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// A field changed in the body, signature left as it was.
	var r RoundRecord
	ipld.Unmarshal(s.Body, dagcbor.Decode, &r, typeOf("RoundRecord"))
	r.Entries[0].Score = 99
	body, _ := ipld.Marshal(dagcbor.Encode, &r, typeOf("RoundRecord"))
	altered := s
	altered.Body = body
	if _, _, err := Open[RoundRecord](reencode(altered)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered score: %v", err)
	}
	// The signature itself flipped.
	badSig := s
	badSig.Sig = append([]byte(nil), s.Sig...)
	badSig.Sig[0] ^= 1
	if _, _, err := Open[RoundRecord](reencode(badSig)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("flipped signature: %v", err)
	}
	// Re-signed by someone else: verifies, but names the other signer.
	other, otherID := key(t)
	ob, _ := Sign(other, sampleRound())
	if _, signer, err := OpenBlock[RoundRecord](ob); err != nil || signer != otherID {
		t.Fatalf("other signer: %v %s", err, signer)
	}
	// Wrong kind.
	if _, _, err := Open[Contribution](b.RawData()); err == nil || !strings.Contains(err.Error(), `holds a "round" record`) {
		t.Fatalf("wrong kind: %v", err)
	}
	// Bytes altered under the same CID (a tampered store).
	raw := append([]byte(nil), b.RawData()...)
	raw[len(raw)-1] ^= 1
	tampered, _ := blocks.NewBlockWithCid(raw, b.Cid())
	if _, _, err := OpenBlock[RoundRecord](tampered); err == nil || !strings.Contains(err.Error(), "altered") || !strings.Contains(err.Error(), b.Cid().String()) {
		t.Fatalf("tampered block: %v", err)
	}
	if _, _, err := Open[RoundRecord](make([]byte, MaxRecordBytes+1)); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized: %v", err)
	}
}

// FuzzOpen feeds arbitrary bytes to the record decoder.
func FuzzOpen(f *testing.F) {
	k, _ := key(f)
	for _, b := range []func() (blocks.Block, error){
		func() (blocks.Block, error) { return Sign(k, sampleRound()) },
		func() (blocks.Block, error) {
			return Sign(k, &Contribution{Swarm: "s", Base: someCID("b"), Payload: someCID("p")})
		},
		func() (blocks.Block, error) { return Sign(k, &SwarmManifest{Name: "n", InitialModel: someCID("m")}) },
	} {
		blk, err := b()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blk.RawData())
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		Open[RoundRecord](raw)
		Open[Contribution](raw)
		Open[SwarmManifest](raw)
	})
}
