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
package transfer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
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
)

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

// readRequest reads one want list. io.EOF before its first byte means the
// requester is done; every other failure is errFrame or a read error.
func readRequest(r *bufio.Reader) ([]cid.Cid, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: want count: %v", errFrame, err)
	}
	if n == 0 || n > MaxWant {
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

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
