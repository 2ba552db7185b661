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
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
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
	var env envelope[RoundRecord]
	if _, err := ipld.Unmarshal(b.RawData(), dagcbor.Decode, &env, typeOf("SignedRound")); err != nil {
		t.Fatal(err)
	}
	reencode := func(e envelope[RoundRecord]) []byte {
		raw, err := ipld.Marshal(dagcbor.Encode, &e, typeOf("SignedRound"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	// A field changed in the body, signature left as it was.
	altered := env
	altered.Body.Entries = append([]Entry(nil), env.Body.Entries...)
	altered.Body.Entries[0].Score = 99
	if _, _, err := Open[RoundRecord](reencode(altered)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered score: %v", err)
	}
	// A link changed: the model the record vouches for.
	relinked := env
	relinked.Body.Model = someCID("another model")
	if _, _, err := Open[RoundRecord](reencode(relinked)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered model link: %v", err)
	}
	// The signature itself flipped.
	badSig := env
	badSig.Sig = append([]byte(nil), env.Sig...)
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

// oldFormat encodes a record as swarmtrain wrote them before records were
// IPLD: the body as a byte string inside the envelope, signed under v1.
func oldFormat(t testing.TB, k crypto.PrivKey, kind string, body any, typeName string) []byte {
	t.Helper()
	enc, err := ipld.Marshal(dagcbor.Encode, body, typeOf(typeName))
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := k.Sign([]byte("swarmtrain/record/v1\x00" + kind + "\x00" + string(enc)))
	pub, _ := crypto.MarshalPublicKey(k.GetPublic())
	n, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "kind", qp.String(kind))
		qp.MapEntry(ma, "body", qp.Bytes(enc))
		qp.MapEntry(ma, "signer", qp.Bytes(pub))
		qp.MapEntry(ma, "sig", qp.Bytes(sig))
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ipld.Encode(n, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestOldFormatIsRefusedInOneLine: a ledger written before records were
// IPLD is refused with ErrOldFormat, whose one line says why it cannot be
// migrated and what to do.
func TestOldFormatIsRefusedInOneLine(t *testing.T) {
	k, _ := key(t)
	for _, c := range []struct {
		raw  []byte
		open func([]byte) error
	}{
		{oldFormat(t, k, KindRound, sampleRound(), "RoundRecord"), func(b []byte) error { _, _, err := Open[RoundRecord](b); return err }},
		{oldFormat(t, k, KindSwarm, &SwarmManifest{Name: "n", InitialModel: someCID("m")}, "SwarmManifest"), func(b []byte) error { _, _, err := Open[SwarmManifest](b); return err }},
		{oldFormat(t, k, KindContribution, &Contribution{Swarm: "s", Base: someCID("b"), Payload: someCID("p")}, "Contribution"), func(b []byte) error { _, _, err := Open[Contribution](b); return err }},
	} {
		err := c.open(c.raw)
		if !errors.Is(err, ErrOldFormat) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--data-dir") {
			t.Errorf("old-format record: %v, want ErrOldFormat in one line", err)
		}
	}
}

// TestRecordLinksAreIPLDLinks: a generic IPLD decoder (no schema) sees the
// body as a map and every reference as a link, which is what lets
// `ipfs dag get <record>/body/model` and recursive pins follow them.
func TestRecordLinksAreIPLDLinks(t *testing.T) {
	k, _ := key(t)
	r := sampleRound()
	outer := someCID("outer")
	r.OuterState = &outer
	r.Entries[1].EvidenceBlocks = &[]cid.Cid{someCID("e1"), someCID("e2")}
	b, err := Sign(k, r)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ipld.Decode(b.RawData(), dagcbor.Decode)
	if err != nil {
		t.Fatal(err)
	}
	link := func(path string) cid.Cid {
		t.Helper()
		at := n
		for _, seg := range datamodel.ParsePath(path).Segments() {
			if at, err = at.LookupBySegment(seg); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		l, err := at.AsLink()
		if err != nil {
			t.Fatalf("%s is a %s, not a link", path, at.Kind())
		}
		return l.(cidlink.Link).Cid
	}
	for path, want := range map[string]cid.Cid{
		"body/model": r.Model, "body/base": r.Base, "body/prev": *r.Prev, "body/outerState": outer,
		"body/entries/0/contribution": r.Entries[0].Contribution, "body/entries/0/payload": r.Entries[0].Payload,
		"body/entries/1/evidenceBlocks/1": someCID("e2"),
	} {
		if got := link(path); !got.Equals(want) {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	// The signature covers the canonical dag-cbor of the body map.
	body, _ := n.LookupByString("body")
	enc, err := ipld.Encode(body, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := n.LookupByString("sig")
	sigBytes, _ := sig.AsBytes()
	if ok, err := k.GetPublic().Verify(signingBytes(KindRound, enc), sigBytes); err != nil || !ok {
		t.Fatalf("the signature does not cover the body map's dag-cbor: %v", err)
	}
}

// nonCanonical re-encodes a signed record with the envelope's keys in
// schema order (kind, body, signer, sig) instead of dag-cbor's, or, with
// bodyOnly, keeps the envelope's order canonical and disorders only the
// body's keys: what anyone holding an honest peer's record can do.
func nonCanonical[T Body](t testing.TB, raw []byte, bodyOnly bool) []byte {
	t.Helper()
	_, typeName, envName := kindOf(new(T))
	var env envelope[T]
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &env, typeOf(envName)); err != nil {
		t.Fatal(err)
	}
	body := bindnode.Wrap(&env.Body, typeOf(typeName)).Representation()
	keys := []string{"kind", "body", "signer", "sig"}
	if bodyOnly {
		keys = []string{"sig", "body", "kind", "signer"} // dag-cbor's: by length, then bytes
	}
	n, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
		for _, k := range keys {
			switch k {
			case "kind":
				qp.MapEntry(ma, k, qp.String(env.Kind))
			case "body":
				qp.MapEntry(ma, k, qp.Node(body))
			case "signer":
				qp.MapEntry(ma, k, qp.Bytes(env.Signer))
			case "sig":
				qp.MapEntry(ma, k, qp.Bytes(env.Sig))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ipld.Encode(n, dagcbor.EncodeOptions{AllowLinks: true, MapSortMode: codec.MapSortMode_None}.Encode)
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

	for _, bodyOnly := range []bool{false, true} {
		other := nonCanonical[Contribution](t, raw, bodyOnly)
		if string(other) == string(raw) {
			t.Fatalf("bodyOnly %v: the re-encoding did not change the bytes", bodyOnly)
		}
		if _, _, err := Open[Contribution](other); !errors.Is(err, ErrNotCanonical) {
			t.Errorf("keys reordered (body only: %v): %v, want ErrNotCanonical", bodyOnly, err)
		}
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

	// The canonical block still opens, and OpenSigned hands back its body.
	got, signer, signed, err := OpenSigned[Contribution](raw)
	if err != nil || signer != id || got.Round != 4 {
		t.Fatalf("canonical record: %v", err)
	}
	if again, _ := ipld.Marshal(dagcbor.Encode, got, typeOf("Contribution")); !bytes.Equal(again, signed) {
		t.Fatal("OpenSigned's body is not the record's encoding")
	}
	if !bytes.Contains(raw, signed) {
		t.Fatal("the signed body is not the body inside the block")
	}
}

// FuzzOpen feeds arbitrary bytes to the record decoder. Whatever opens
// must be canonical: re-encoding the envelope gives back the input byte
// for byte, and the signed bytes are the body's canonical encoding. So no
// two byte strings open to one signed content.
func FuzzOpen(f *testing.F) {
	k, _ := key(f)
	for _, b := range []func() (blocks.Block, error){
		func() (blocks.Block, error) { return Sign(k, sampleRound()) },
		func() (blocks.Block, error) {
			return Sign(k, &Contribution{Swarm: "s", Base: someCID("b"), Payload: someCID("p")})
		},
		func() (blocks.Block, error) { return Sign(k, &SwarmManifest{Name: "n", InitialModel: someCID("m")}) },
		func() (blocks.Block, error) {
			d := 1e-7
			return Sign(k, &Contribution{Swarm: "s", Round: 1, Base: someCID("b"), Payload: someCID("p"),
				PeerAudit: &PeerVerdict{Round: 0, Peer: "q", Contribution: someCID("c"), Pass: true, PayloadDistance: &d, EndDistance: &d}})
		},
	} {
		blk, err := b()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blk.RawData())
	}
	f.Add(nonCanonical[RoundRecord](f, mustSign(f, k, sampleRound()), false))
	f.Add(nonCanonical[RoundRecord](f, mustSign(f, k, sampleRound()), true))
	f.Add(oldFormat(f, k, KindRound, sampleRound(), "RoundRecord"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		roundTrip[RoundRecord](t, raw)
		roundTrip[Contribution](t, raw)
		roundTrip[SwarmManifest](t, raw)
	})
}

func mustSign[T Body](t testing.TB, k crypto.PrivKey, body *T) []byte {
	b, err := Sign(k, body)
	if err != nil {
		t.Fatal(err)
	}
	return b.RawData()
}

func roundTrip[T Body](t *testing.T, raw []byte) {
	t.Helper()
	body, signer, signed, err := OpenSigned[T](raw)
	if err != nil {
		return
	}
	_, typeName, envName := kindOf(body)
	var env envelope[T]
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &env, typeOf(envName)); err != nil {
		t.Fatalf("opened, but the envelope does not decode: %v", err)
	}
	again, err := ipld.Marshal(dagcbor.Encode, &env, typeOf(envName))
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("opened a non-canonical envelope (%v):\n%x\nre-encodes as\n%x", err, raw, again)
	}
	enc, err := ipld.Marshal(dagcbor.Encode, body, typeOf(typeName))
	if err != nil || !bytes.Equal(enc, signed) || !bytes.Contains(raw, signed) {
		t.Fatalf("opened a %s whose body does not re-encode to the signed bytes (%v)", typeName, err)
	}
	pub, _ := crypto.UnmarshalPublicKey(env.Signer)
	if id, _ := peer.IDFromPublicKey(pub); id != signer {
		t.Fatalf("signer %s, the envelope's key is %s", signer, id)
	}
	if ok, _ := pub.Verify(signingBytes(env.Kind, signed), env.Sig); !ok {
		t.Fatalf("opened a %s whose signature does not cover its body", typeName)
	}
}

// TestThinningRoundTrips: a thinned peer's entry density and score-table
// thinning survive signing and opening; a record without them keeps the
// encoding it had (both optional, absent when nil).
func TestThinningRoundTrips(t *testing.T) {
	k, _ := key(t)
	plain, _ := Sign(k, sampleRound())
	rec := sampleRound()
	d := 0.05
	rec.Entries[0].Density = &d
	rec.Scores[0].Thinning = &Thinning{Halvings: 2, Accepted: 1}
	b, err := Sign(k, rec)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := OpenBlock[RoundRecord](b)
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Entries[0]; e.Density == nil || *e.Density != d || got.Entries[1].Density != nil {
		t.Errorf("entry densities %v, %v; want %v, nil", e.Density, got.Entries[1].Density, d)
	}
	if th := got.Scores[0].Thinning; th == nil || *th != (Thinning{Halvings: 2, Accepted: 1}) {
		t.Errorf("thinning %+v", th)
	}
	back, _, err := OpenBlock[RoundRecord](plain)
	if err != nil || back.Entries[0].Density != nil || back.Scores[0].Thinning != nil {
		t.Errorf("a record without them: %+v, %v", back, err)
	}
}
