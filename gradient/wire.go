package gradient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire format of one encoded vector (little-endian):
//
//	offset size field
//	0      4    magic "SWGV"
//	4      1    version (1)
//	5      1    codec id (see codecIDs)
//	6      2    reserved, zero
//	8      4    vector length in elements
//	12     4    payload length in bytes
//	16     4    CRC-32C of the payload
//	20     ...  codec payload
//
// The header is fixed-size so a decoder can check every length against its
// limits before it looks at, or allocates for, the payload.
const (
	wireMagic   = "SWGV"
	wireVersion = 1
	HeaderSize  = 20
)

// codecIDs numbers the codecs on the wire; never renumber.
func codecIDs() []string {
	return []string{1: Dense, 2: FP16, 3: Int8, 4: TopK, 5: TopKInt8, 6: TopKFP16, 7: TopKInt2}
}

func codecID(name string) (byte, error) {
	for id, n := range codecIDs() {
		if n == name && n != "" {
			return byte(id), nil
		}
	}
	return 0, fmt.Errorf("codec %q has no wire id", name)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Limits bound what a decoder accepts. A node sets Elems to its model's
// parameter count, so no message can make it allocate more than one vector.
type Limits struct {
	// Elems is the exact vector length expected; 0 accepts up to MaxElems.
	Elems int
	// MaxElems caps the vector length when Elems is 0.
	MaxElems int
	// MaxBytes caps the whole encoded message.
	MaxBytes int
}

// Defaults for Limits: 64M elements (a 256 MB fp32 model) and 64 MiB of
// payload, far above an MNIST swarm and far below what hurts a node.
const (
	DefaultMaxElems = 64 << 20
	DefaultMaxBytes = 64 << 20
)

// Header is a decoded wire header.
type Header struct {
	Codec      string
	Elems      int
	PayloadLen int
}

// Marshal encodes v with c and wraps it in the wire header.
func Marshal(c Codec, v []float32) ([]byte, error) {
	id, err := codecID(c.Name())
	if err != nil {
		return nil, err
	}
	if uint64(len(v)) > 1<<32-1 {
		return nil, fmt.Errorf("vector of %d elements is too long for the wire format", len(v))
	}
	buf := make([]byte, HeaderSize, HeaderSize+len(v)/8)
	buf, err = c.Encode(buf, v)
	if err != nil {
		return nil, err
	}
	payload := buf[HeaderSize:]
	copy(buf, wireMagic)
	buf[4], buf[5] = wireVersion, id
	binary.LittleEndian.PutUint32(buf[8:], uint32(len(v)))
	binary.LittleEndian.PutUint32(buf[12:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[16:], crc32.Checksum(payload, castagnoli))
	return buf, nil
}

// payloadSize is the payload length a dense codec produces for n elements;
// exact is false for the sparse codecs, whose size depends on the content.
func payloadSize(codec string, n int) (size int, exact bool) {
	switch codec {
	case Dense:
		return fp32Values{}.size(n), true
	case FP16:
		return fp16Values{}.size(n), true
	case Int8:
		return int8Values{}.size(n), true
	}
	return 0, false
}

// ParseHeader validates the header and the payload's length and checksum
// against lim. It allocates nothing.
func ParseHeader(b []byte, lim Limits) (Header, error) {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	if lim.MaxElems <= 0 {
		lim.MaxElems = DefaultMaxElems
	}
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("update: %d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	if len(b) > lim.MaxBytes {
		return Header{}, fmt.Errorf("update: %d bytes, over the limit of %d", len(b), lim.MaxBytes)
	}
	if string(b[:4]) != wireMagic {
		return Header{}, errors.New("update: bad magic (not a swarmtrain vector)")
	}
	if b[4] != wireVersion {
		return Header{}, fmt.Errorf("update: wire version %d, this build reads %d", b[4], wireVersion)
	}
	ids := codecIDs()
	if int(b[5]) >= len(ids) || ids[b[5]] == "" {
		return Header{}, fmt.Errorf("update: unknown codec id %d", b[5])
	}
	if b[6] != 0 || b[7] != 0 {
		return Header{}, errors.New("update: reserved header bytes are not zero")
	}
	h := Header{
		Codec:      ids[b[5]],
		Elems:      int(binary.LittleEndian.Uint32(b[8:])),
		PayloadLen: int(binary.LittleEndian.Uint32(b[12:])),
	}
	if lim.Elems > 0 && h.Elems != lim.Elems {
		return Header{}, fmt.Errorf("update: vector of %d elements, the model has %d", h.Elems, lim.Elems)
	}
	if h.Elems > lim.MaxElems {
		return Header{}, fmt.Errorf("update: vector of %d elements, over the limit of %d", h.Elems, lim.MaxElems)
	}
	if h.PayloadLen != len(b)-HeaderSize {
		return Header{}, fmt.Errorf("update: header says %d payload bytes, message has %d", h.PayloadLen, len(b)-HeaderSize)
	}
	// Dense codecs have an exact payload size for the vector length, so a
	// header that claims a long vector with a short payload fails here,
	// before Unmarshal allocates the vector.
	if want, exact := payloadSize(h.Codec, h.Elems); exact && h.PayloadLen != want {
		return Header{}, fmt.Errorf("update: %s payload of %d bytes for %d elements, want %d", h.Codec, h.PayloadLen, h.Elems, want)
	}
	if got, want := crc32.Checksum(b[HeaderSize:], castagnoli), binary.LittleEndian.Uint32(b[16:]); got != want {
		return Header{}, fmt.Errorf("update: payload checksum %08x, header says %08x", got, want)
	}
	return h, nil
}

// UnmarshalInto decodes a wire message into dst, whose length must be the
// message's vector length. density is irrelevant to decoding and not needed.
func UnmarshalInto(dst []float32, b []byte, lim Limits) (Header, error) {
	lim.Elems = len(dst)
	h, err := ParseHeader(b, lim)
	if err != nil {
		return h, err
	}
	c, err := NewCodec(h.Codec, 1)
	if err != nil {
		return h, err
	}
	if err := c.Decode(dst, b[HeaderSize:]); err != nil {
		return h, fmt.Errorf("update: %w", err)
	}
	return h, nil
}

// Unmarshal decodes a wire message into a new vector after validating the
// header against lim.
func Unmarshal(b []byte, lim Limits) ([]float32, Header, error) {
	h, err := ParseHeader(b, lim)
	if err != nil {
		return nil, h, err
	}
	dst := make([]float32, h.Elems)
	h, err = UnmarshalInto(dst, b, Limits{MaxBytes: lim.MaxBytes, MaxElems: lim.MaxElems})
	if err != nil {
		return nil, h, err
	}
	return dst, h, nil
}
