package record

import (
	"bytes"
	"errors"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// domain separates swarmtrain's signatures from every other use of a libp2p key.
const domain = "swarmtrain/record/v1"

// MaxRecordBytes caps a record block: a round record of a thousand
// contributions is ~300 KB; anything far larger is hostile.
const MaxRecordBytes = 4 << 20

// Body is any record type.
type Body interface {
	SwarmManifest | Contribution | RoundRecord
}

func kindOf(b any) (kind, typeName string) {
	switch b.(type) {
	case *SwarmManifest:
		return KindSwarm, "SwarmManifest"
	case *Contribution:
		return KindContribution, "Contribution"
	case *RoundRecord:
		return KindRound, "RoundRecord"
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
	kind, typeName := kindOf(body)
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
	raw, err := ipld.Marshal(dagcbor.Encode, &Signed{Kind: kind, Body: enc, Signer: pub, Sig: sig}, typeOf("Signed"))
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
	body = new(T)
	kind, typeName := kindOf(body)
	if len(raw) > MaxRecordBytes {
		return nil, "", nil, fmt.Errorf("%s record: %d bytes, over the limit of %d", kind, len(raw), MaxRecordBytes)
	}
	var s Signed
	if _, err := ipld.Unmarshal(raw, dagcbor.Decode, &s, typeOf("Signed")); err != nil {
		return nil, "", nil, fmt.Errorf("%s record: not a signed record: %w", kind, err)
	}
	if s.Kind != kind {
		return nil, "", nil, fmt.Errorf("%s record: block holds a %q record", kind, s.Kind)
	}
	if err := canonical(raw, &s, "Signed"); err != nil {
		return nil, "", nil, fmt.Errorf("%s record: envelope: %w", kind, err)
	}
	pub, err := crypto.UnmarshalPublicKey(s.Signer)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s record: signer key: %w", kind, err)
	}
	signer, err = peer.IDFromPublicKey(pub)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s record: signer key: %w", kind, err)
	}
	ok, err := pub.Verify(signingBytes(kind, s.Body), s.Sig)
	if err != nil || !ok {
		return nil, "", nil, fmt.Errorf("%s record by %s: %w", kind, signer, ErrBadSignature)
	}
	if _, err := ipld.Unmarshal(s.Body, dagcbor.Decode, body, typeOf(typeName)); err != nil {
		return nil, "", nil, fmt.Errorf("%s record by %s: body: %w", kind, signer, err)
	}
	// The signer chose these bytes, so a non-canonical body cannot frame
	// anyone; it is refused all the same so that one content has one
	// block, whoever encoded it.
	if err := canonical(s.Body, body, typeName); err != nil {
		return nil, "", nil, fmt.Errorf("%s record by %s: body: %w", kind, signer, err)
	}
	return body, signer, s.Body, nil
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
