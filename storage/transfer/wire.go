// Package transfer is /swarmtrain/blocks/1, a plain libp2p stream protocol
// that moves a whole UnixFS file (a checkpoint) between two swarmtrain
// peers much faster than bitswap: the requester names the blocks it wants
// by CID, a level of the DAG at a time, over a few streams, and the server
// answers each request with the blocks in the order asked. Leaves are read
// from the stream straight into their place in one buffer the size of the
// file and hash-checked there, so nothing is copied twice and nothing a
// peer sends is kept unless it hashes to the CID that was asked for.
//
// Bitswap stays the exchange for everything else (records, payloads, IPFS
// clients, peers that do not speak this protocol): storage.Exchange tries
// this protocol first for files and falls back to bitswap.
//
// Wire format (all integers unsigned varints):
//
//	request:  n (1..MaxWant), then n times: len (1..MaxCIDBytes), CID bytes
//	response: per CID asked, in order: status byte (0 have, 1 don't have);
//	          after 0: len (0..MaxBlockBytes), block bytes
//
// A stream carries any number of request/response pairs, one after the
// other; the requester closes its side when done.
//
// Bulk channel (bulk.go): the encryption and muxing of a libp2p stream
// cost more CPU than the copy itself on a fast link, and nothing here is
// secret (checkpoints are public to the swarm) nor needs the channel's
// integrity (every block is checked against its CID). So for a big file
// the requester may ask, on the stream, for a plain TCP connection:
//
//	offer request:  n = 0
//	offer response: status 1 (no offer), or status 2, then a 32-byte
//	                token, len (4 or 16), the server's IP, port (1..65535)
//
// It then dials that IP and port (only if the IP is the one its libp2p
// connection reaches) and sends a hello; the server answers one status
// byte (0 accepted, 1 refused), after which the TCP connection carries
// requests and responses exactly as a stream does:
//
//	hello: the 32-byte token, len (1..maxPeerIDBytes), requester's peer ID
//
// Refused, unreachable or never offered, the requester goes on over the
// stream it asked on.
package transfer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ID is the protocol's libp2p identifier. node/p2p bounds its streams and
// memory in the resource manager under the same name.
const ID = protocol.ID("/swarmtrain/blocks/1")

const (
	// MaxBlockBytes is bitswap's block limit (2 MiB, the spec's maximum):
	// any block a UnixFS importer makes fits, and a peer cannot make us
	// read more than this for one block.
	MaxBlockBytes = 2 << 20
	// MaxWant is the most CIDs in one request: one DAG node's links in the
	// widest layout in use (Kubo's unixfs-v1-2025 profile, 1024 links).
	MaxWant = 1024
	// MaxCIDBytes is boxo's MaximumAllowedCid: a 128-byte digest with
	// worst-case varint prefixes. Longer ones are refused unread.
	MaxCIDBytes = 168
)

const (
	statusHave     = 0
	statusDontHave = 1
	statusOffer    = 2
)

// tokenBytes is the size of a bulk token: 256 random bits, unguessable.
const tokenBytes = 32

// maxPeerIDBytes bounds the peer ID in a hello: an identity multihash of
// the largest key libp2p inlines (42 bytes for Ed25519) or a SHA-256 one
// (34 bytes) fit with room; longer ones are refused unread.
const maxPeerIDBytes = 128

// errFrame marks bytes that do not follow the wire format.
var errFrame = errors.New("malformed frame")

// writeRequest writes one want list.
func writeRequest(w *bufio.Writer, cids []cid.Cid) error {
	if len(cids) == 0 || len(cids) > MaxWant {
		return fmt.Errorf("transfer: want list of %d CIDs (1 to %d)", len(cids), MaxWant)
	}
	var tmp [binary.MaxVarintLen64]byte
	if _, err := w.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(cids)))]); err != nil {
		return err
	}
	for _, c := range cids {
		b := c.Bytes()
		if _, err := w.Write(tmp[:binary.PutUvarint(tmp[:], uint64(len(b)))]); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return w.Flush()
}

// writeOfferRequest asks for a bulk channel (a want list of zero CIDs).
func writeOfferRequest(w *bufio.Writer) error {
	if err := w.WriteByte(0); err != nil {
		return err
	}
	return w.Flush()
}

// readRequest reads one want list; an empty one asks for a bulk channel.
// io.EOF before its first byte means the requester is done; every other
// failure is errFrame or a read error.
func readRequest(r *bufio.Reader) ([]cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: want count: %v", errFrame, err)
	}
	if n == 0 {
		return []cid.Cid{}, nil
	}
	if n > MaxWant {
		return nil, fmt.Errorf("%w: want list of %d CIDs (1 to %d)", errFrame, n, MaxWant)
	}
	cids := make([]cid.Cid, 0, n)
	var buf [MaxCIDBytes]byte
	for i := uint64(0); i < n; i++ {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("%w: CID %d length: %v", errFrame, i, noEOF(err))
		}
		if l == 0 || l > MaxCIDBytes {
			return nil, fmt.Errorf("%w: CID %d of %d bytes (1 to %d)", errFrame, i, l, MaxCIDBytes)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return nil, fmt.Errorf("%w: CID %d: %v", errFrame, i, noEOF(err))
		}
		c, err := cid.Cast(buf[:l])
		if err != nil {
			return nil, fmt.Errorf("%w: CID %d: %v", errFrame, i, err)
		}
		cids = append(cids, c)
	}
	return cids, nil
}

// readBlockHeader reads a response's status and, if the peer has the
// block, its length (checked against max before anything is allocated).
func readBlockHeader(r *bufio.Reader, max int) (have bool, n int, err error) {
	s, err := r.ReadByte()
	if err != nil {
		return false, 0, fmt.Errorf("%w: status: %v", errFrame, noEOF(err))
	}
	switch s {
	case statusDontHave:
		return false, 0, nil
	case statusHave:
	default:
		return false, 0, fmt.Errorf("%w: status %d", errFrame, s)
	}
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return false, 0, fmt.Errorf("%w: block length: %v", errFrame, noEOF(err))
	}
	if l > uint64(max) {
		return false, 0, fmt.Errorf("%w: block of %d bytes, over %d", errFrame, l, max)
	}
	return true, int(l), nil
}

// writeBlock writes one response; data nil means "don't have".
func writeBlock(w *bufio.Writer, data []byte, have bool) error {
	if !have {
		return w.WriteByte(statusDontHave)
	}
	var tmp [1 + binary.MaxVarintLen64]byte
	tmp[0] = statusHave
	n := 1 + binary.PutUvarint(tmp[1:], uint64(len(data)))
	if _, err := w.Write(tmp[:n]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// offer is the server's answer to an offer request: where to connect and
// the one-time token to present.
type offer struct {
	token [tokenBytes]byte
	ip    net.IP
	port  int
}

// writeOffer answers an offer request; o nil means no offer.
func writeOffer(w *bufio.Writer, o *offer) error {
	if o == nil {
		if err := w.WriteByte(statusDontHave); err != nil {
			return err
		}
		return w.Flush()
	}
	ip := o.ip
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	b := append([]byte{statusOffer}, o.token[:]...)
	b = binary.AppendUvarint(b, uint64(len(ip)))
	b = append(b, ip...)
	b = binary.AppendUvarint(b, uint64(o.port))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

// readOffer reads the answer to an offer request: nil if none was made.
func readOffer(r *bufio.Reader) (*offer, error) {
	s, err := r.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%w: offer status: %v", errFrame, noEOF(err))
	}
	switch s {
	case statusDontHave:
		return nil, nil
	case statusOffer:
	default:
		return nil, fmt.Errorf("%w: offer status %d", errFrame, s)
	}
	o := &offer{}
	if _, err := io.ReadFull(r, o.token[:]); err != nil {
		return nil, fmt.Errorf("%w: offer token: %v", errFrame, noEOF(err))
	}
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("%w: offer IP length: %v", errFrame, noEOF(err))
	}
	if l != net.IPv4len && l != net.IPv6len {
		return nil, fmt.Errorf("%w: offer IP of %d bytes (4 or 16)", errFrame, l)
	}
	o.ip = make(net.IP, l)
	if _, err := io.ReadFull(r, o.ip); err != nil {
		return nil, fmt.Errorf("%w: offer IP: %v", errFrame, noEOF(err))
	}
	port, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("%w: offer port: %v", errFrame, noEOF(err))
	}
	if port == 0 || port > 65535 {
		return nil, fmt.Errorf("%w: offer port %d (1 to 65535)", errFrame, port)
	}
	o.port = int(port)
	return o, nil
}

// writeHello opens a bulk connection: the token and who presents it.
func writeHello(w io.Writer, token [tokenBytes]byte, p peer.ID) error {
	id := []byte(p)
	if len(id) == 0 || len(id) > maxPeerIDBytes {
		return fmt.Errorf("transfer: peer ID of %d bytes (1 to %d)", len(id), maxPeerIDBytes)
	}
	b := append(token[:], binary.AppendUvarint(nil, uint64(len(id)))...)
	_, err := w.Write(append(b, id...))
	return err
}

// readHello reads a bulk connection's hello.
func readHello(r *bufio.Reader) (token [tokenBytes]byte, p peer.ID, err error) {
	if _, err := io.ReadFull(r, token[:]); err != nil {
		return token, "", fmt.Errorf("%w: hello token: %v", errFrame, noEOF(err))
	}
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return token, "", fmt.Errorf("%w: hello peer ID length: %v", errFrame, noEOF(err))
	}
	if l == 0 || l > maxPeerIDBytes {
		return token, "", fmt.Errorf("%w: hello peer ID of %d bytes (1 to %d)", errFrame, l, maxPeerIDBytes)
	}
	id := make([]byte, l)
	if _, err := io.ReadFull(r, id); err != nil {
		return token, "", fmt.Errorf("%w: hello peer ID: %v", errFrame, noEOF(err))
	}
	p, err = peer.IDFromBytes(id)
	if err != nil {
		return token, "", fmt.Errorf("%w: hello peer ID: %v", errFrame, err)
	}
	return token, p, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
