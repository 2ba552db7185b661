package record

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	basicnode "github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ipld/go-ipld-prime/node/bindnode"
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

// reorderedEnvelope re-encodes a signed record's envelope with its map keys
// in another order: what anyone holding an honest peer's record can do.
func reorderedEnvelope(t testing.TB, raw []byte) []byte {
	t.Helper()
	var s Signed
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &s, typeOf("Signed")); err != nil {
		t.Fatal(err)
	}
	n, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "kind", qp.String(s.Kind))
		qp.MapEntry(ma, "body", qp.Bytes(s.Body))
		qp.MapEntry(ma, "signer", qp.Bytes(s.Signer))
		qp.MapEntry(ma, "sig", qp.Bytes(s.Sig))
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ipld.Encode(n, dagcbor.EncodeOptions{MapSortMode: codec.MapSortMode_None}.Encode)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNonCanonicalEncodingsAreRefused: every encoding of a signed record
// other than the one Sign writes is refused, so that nobody but the signer
// can make a second block — another CID — of the signer's record.
func TestNonCanonicalEncodingsAreRefused(t *testing.T) {
	k, id := key(t)
	blk, err := Sign(k, &Contribution{Swarm: "s", Round: 4, Peer: id.String(), Base: someCID("b"), Payload: someCID("p"), Codec: "topk+int8"})
	if err != nil {
		t.Fatal(err)
	}
	raw := blk.RawData()

	reordered := reorderedEnvelope(t, raw)
	if string(reordered) == string(raw) {
		t.Fatal("the re-encoding did not change the bytes")
	}
	if _, _, err := Open[Contribution](reordered); !errors.Is(err, ErrNotCanonical) {
		t.Errorf("envelope keys reordered: %v, want ErrNotCanonical", err)
	}

	// A length written in more bytes than it needs: the 64-byte signature's
	// header 0x58 0x40 becomes 0x59 0x00 0x40. (The decoder itself refuses
	// this one; the re-encoding check would too.)
	sigKey := []byte("\x63sig\x58\x40")
	i := bytes.Index(raw, sigKey)
	if i < 0 {
		t.Fatalf("no signature header in %x", raw[:16])
	}
	long := append(append(append([]byte(nil), raw[:i+4]...), 0x59, 0x00, 0x40), raw[i+6:]...)
	if _, _, err := Open[Contribution](long); err == nil {
		t.Error("non-minimal length opened")
	}

	// A body the signer itself encoded non-canonically, correctly signed.
	var s Signed
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &s, typeOf("Signed")); err != nil {
		t.Fatal(err)
	}
	var c Contribution
	if _, err := ipld.Unmarshal(s.Body, dagcbor.Decode, &c, typeOf("Contribution")); err != nil {
		t.Fatal(err)
	}
	nb, err := ipld.Encode(bindnode.Wrap(&c, typeOf("Contribution")).Representation(), dagcbor.EncodeOptions{AllowLinks: true, MapSortMode: codec.MapSortMode_None}.Encode)
	if err != nil {
		t.Fatal(err)
	}
	if string(nb) == string(s.Body) {
		t.Fatal("the body re-encoding did not change the bytes")
	}
	sig, _ := k.Sign(signingBytes(KindContribution, nb))
	s.Body, s.Sig = nb, sig
	env, _ := ipld.Marshal(dagcbor.Encode, &s, typeOf("Signed"))
	if _, _, err := Open[Contribution](env); !errors.Is(err, ErrNotCanonical) {
		t.Errorf("signed non-canonical body: %v, want ErrNotCanonical", err)
	}

	// The canonical block still opens, and OpenSigned hands back its body.
	got, signer, signed, err := OpenSigned[Contribution](raw)
	if err != nil || signer != id || got.Round != 4 {
		t.Fatalf("canonical record: %v", err)
	}
	if again, _ := ipld.Marshal(dagcbor.Encode, got, typeOf("Contribution")); !bytes.Equal(again, signed) {
		t.Fatal("OpenSigned's body is not the record's encoding")
	}
}

// FuzzOpen feeds arbitrary bytes to the record decoder. Whatever opens
// must be canonical: re-encoding the envelope gives back the input byte
// for byte, and re-encoding the decoded body gives back the signed bytes.
// So no two byte strings open to one signed content.
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
		f.Add(reorderedEnvelope(f, blk.RawData()))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		roundTrip(t, raw, "RoundRecord", func() (any, peer.ID, []byte, error) { return OpenSigned[RoundRecord](raw) })
		roundTrip(t, raw, "Contribution", func() (any, peer.ID, []byte, error) { return OpenSigned[Contribution](raw) })
		roundTrip(t, raw, "SwarmManifest", func() (any, peer.ID, []byte, error) { return OpenSigned[SwarmManifest](raw) })
	})
}

func roundTrip(t *testing.T, raw []byte, typeName string, open func() (any, peer.ID, []byte, error)) {
	t.Helper()
	body, signer, signed, err := open()
	if err != nil {
		return
	}
	var s Signed
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &s, typeOf("Signed")); err != nil {
		t.Fatalf("opened, but the envelope does not decode: %v", err)
	}
	env, err := ipld.Marshal(dagcbor.Encode, &s, typeOf("Signed"))
	if err != nil || !bytes.Equal(env, raw) {
		t.Fatalf("opened a non-canonical envelope (%v):\n%x\nre-encodes as\n%x", err, raw, env)
	}
	again, err := ipld.Marshal(dagcbor.Encode, body, typeOf(typeName))
	if err != nil || !bytes.Equal(again, signed) || !bytes.Equal(signed, s.Body) {
		t.Fatalf("opened a %s whose body does not re-encode to the signed bytes (%v)", typeName, err)
	}
	pub, _ := crypto.UnmarshalPublicKey(s.Signer)
	if id, _ := peer.IDFromPublicKey(pub); id != signer {
		t.Fatalf("signer %s, the envelope's key is %s", signer, id)
	}
}
