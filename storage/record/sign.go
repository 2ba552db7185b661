package record

import (
	"bytes"
	"errors"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// domain separates swarmtrain's signatures from every other use of a libp2p
// key. v1 signed the same construction over a body carried as bytes; v2
// keeps one format's signatures from ever verifying in the other.
const domain = "swarmtrain/record/v2"

// MaxRecordBytes caps a record block: a round record of a thousand
// contributions is ~300 KB; anything far larger is hostile.
const MaxRecordBytes = 4 << 20

// Body is any record type.
type Body interface {
	SwarmManifest | Contribution | RoundRecord
}

// kindOf names a body's kind, its schema type and its envelope's.
func kindOf(b any) (kind, typeName, envelopeName string) {
	switch b.(type) {
	case *SwarmManifest:
		return KindSwarm, "SwarmManifest", "SignedSwarm"
	case *Contribution:
		return KindContribution, "Contribution", "SignedContribution"
	case *RoundRecord:
		return KindRound, "RoundRecord", "SignedRound"
	}
	panic(fmt.Sprintf("record: %T is not a record type", b))
}

func signingBytes(kind string, body []byte) []byte {
	var buf bytes.Buffer
	buf.WriteString(domain)
	buf.WriteByte(0)
	buf.WriteString(kind)
	buf.WriteByte(0)
	buf.Write(body)
	return buf.Bytes()
}

// CIDBuilder makes the CIDs of record blocks: CIDv1, dag-cbor, SHA2-256.
func CIDBuilder() cid.Builder {
	return cid.V1Builder{Codec: cid.DagCBOR, MhType: mh.SHA2_256}
}

// Sign encodes body, signs it with key and returns the record block.
func Sign[T Body](key crypto.PrivKey, body *T) (blocks.Block, error) {
	kind, typeName, envName := kindOf(body)
	enc, err := ipld.Marshal(dagcbor.Encode, body, typeOf(typeName))
	if err != nil {
		return nil, fmt.Errorf("encoding %s record: %w", kind, err)
	}
	sig, err := key.Sign(signingBytes(kind, enc))
	if err != nil {
		return nil, fmt.Errorf("signing %s record: %w", kind, err)
	}
	pub, err := crypto.MarshalPublicKey(key.GetPublic())
	if err != nil {
		return nil, err
	}
	raw, err := ipld.Marshal(dagcbor.Encode, &envelope[T]{Kind: kind, Body: *body, Signer: pub, Sig: sig}, typeOf(envName))
	if err != nil {
		return nil, err
	}
	c, err := CIDBuilder().Sum(raw)
	if err != nil {
		return nil, err
	}
	return blocks.NewBlockWithCid(raw, c)
}

// ErrBadSignature marks a record whose signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// ErrNotCanonical marks a record whose bytes are not the one encoding Sign
// produces for its content. dag-cbor decoders accept map keys in any order,
// non-minimal lengths and the like; if Open accepted them, anyone could
// re-encode an honest peer's signed record into a second block with the
// same signer and signature but another CID — a forged "second version"
// that frames the peer as an equivocator. Refusing every encoding but the
// canonical one makes a record's CID a function of its signed content.
var ErrNotCanonical = errors.New("not the canonical encoding")

// ErrOldFormat marks a record written before records were IPLD (its body
// was opaque bytes, so no IPLD tool could follow its links). It cannot be
// migrated: the links in a record name the CIDs of old-format blocks, and
// the contributions among them carry their authors' signatures, which
// nobody but the authors can renew.
var ErrOldFormat = errors.New("written by an older swarmtrain (record body as bytes), which cannot be migrated (contributions carry their authors' signatures): start a new swarm in a new --data-dir")

// Open verifies a record block's bytes and decodes its body into a new T.
// It returns the signer's peer ID. raw comes from the network or a store:
// Open never panics and refuses oversized input, a wrong kind, a bad
// signature, bodies that do not match the schema, and any encoding of the
// envelope or the body other than the canonical one (ErrNotCanonical).
func Open[T Body](raw []byte) (body *T, signer peer.ID, err error) {
	body, signer, _, err = OpenSigned[T](raw)
	return body, signer, err
}

// OpenSigned is Open that also returns the signed body bytes: what the
// signer vouched for, and so what tells two records of one signer apart.
// Two envelopes may differ (an ECDSA or secp256k1 signature can be
// re-randomised by anyone) while the signed body is the same; an
// equivocation is two different signed bodies, never two envelopes.
func OpenSigned[T Body](raw []byte) (body *T, signer peer.ID, signed []byte, err error) {
	defer func() {
		if r := recover(); r != nil { // bindnode panics on some malformed input
			body, signer, signed, err = nil, "", nil, fmt.Errorf("record: malformed: %v", r)
		}
	}()
	kind, typeName, envName := kindOf(new(T))
	if len(raw) > MaxRecordBytes {
		return nil, "", nil, fmt.Errorf("%s record: %d bytes, over the limit of %d", kind, len(raw), MaxRecordBytes)
	}
	var env envelope[T]
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &env, typeOf(envName)); err != nil {
		return nil, "", nil, fmt.Errorf("%s record: %w", kind, whyNotAnEnvelope(raw, kind, err))
	}
	if env.Kind != kind {
		return nil, "", nil, fmt.Errorf("%s record: block holds a %q record", kind, env.Kind)
	}
	// The envelope holds the body, so one comparison covers both: a
	// canonical envelope has the canonical body inside.
	if err := canonical(raw, &env, envName); err != nil {
		return nil, "", nil, fmt.Errorf("%s record: %w", kind, err)
	}
	pub, err := crypto.UnmarshalPublicKey(env.Signer)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s record: signer key: %w", kind, err)
	}
	signer, err = peer.IDFromPublicKey(pub)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s record: signer key: %w", kind, err)
	}
	signed, err = ipld.Marshal(dagcbor.Encode, &env.Body, typeOf(typeName))
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s record by %s: body: %w", kind, signer, err)
	}
	ok, err := pub.Verify(signingBytes(kind, signed), env.Sig)
	if err != nil || !ok {
		return nil, "", nil, fmt.Errorf("%s record by %s: %w", kind, signer, ErrBadSignature)
	}
	return &env.Body, signer, signed, nil
}

// whyNotAnEnvelope turns a failed decode into the error a user can act
// on: a block of another kind, or of the old format, says so; anything
// else keeps the decoder's error.
func whyNotAnEnvelope(raw []byte, kind string, err error) error {
	n, perr := ipld.Decode(raw, dagcbor.Decode)
	if perr != nil || n.Kind() != datamodel.Kind_Map {
		return fmt.Errorf("not a signed record: %w", err)
	}
	if k, kerr := n.LookupByString("kind"); kerr == nil {
		if s, serr := k.AsString(); serr == nil && s != kind {
			return fmt.Errorf("block holds a %q record", s)
		}
	}
	if b, berr := n.LookupByString("body"); berr == nil && b.Kind() == datamodel.Kind_Bytes {
		return ErrOldFormat
	}
	return fmt.Errorf("not a signed record: %w", err)
}

// canonical checks that raw is exactly what Sign's encoder writes for v:
// decode-then-encode must give back the same bytes.
func canonical(raw []byte, v any, typeName string) error {
	again, err := ipld.Marshal(dagcbor.Encode, v, typeOf(typeName))
	if err != nil {
		return fmt.Errorf("re-encoding: %w", err)
	}
	if !bytes.Equal(again, raw) {
		return ErrNotCanonical
	}
	return nil
}

// OpenBlock is Open that also checks the block's bytes hash to its CID.
func OpenBlock[T Body](b blocks.Block) (*T, peer.ID, error) {
	c, err := b.Cid().Prefix().Sum(b.RawData())
	if err != nil {
		return nil, "", fmt.Errorf("record %s: %w", b.Cid(), err)
	}
	if !c.Equals(b.Cid()) {
		return nil, "", fmt.Errorf("record %s: bytes hash to %s: the stored block was altered", b.Cid(), c)
	}
	body, signer, err := Open[T](b.RawData())
	if err != nil {
		return nil, "", fmt.Errorf("record %s: %w", b.Cid(), err)
	}
	return body, signer, nil
}
