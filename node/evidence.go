package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// EvidenceProtocol carries proof of an equivocation from the peer that saw
// it to the coordinator: the two signed contributions. Gossip stops the
// second version at the first honest hop, so the coordinator, which may
// have received only the first (relayed after the equivocator lost the
// mesh), would never learn of it. The proof verifies itself; the reporter
// needs no trust.
const EvidenceProtocol = protocol.ID("/swarmtrain/evidence/1")

// evidenceTimeout bounds one report: two records of at most a few hundred
// kilobytes over a live connection.
const evidenceTimeout = 10 * time.Second

// writeEvidence sends the two blocks as length-prefixed frames.
func writeEvidence(w io.Writer, a, b []byte) error {
	for _, blk := range [][]byte{a, b} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(blk)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(blk); err != nil {
			return err
		}
	}
	return nil
}

// readEvidence reads two frames, each at most record.MaxRecordBytes.
func readEvidence(r io.Reader) (a, b []byte, err error) {
	var out [2][]byte
	for i := range out {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, nil, err
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > record.MaxRecordBytes {
			return nil, nil, fmt.Errorf("evidence frame of %d bytes exceeds %d", size, record.MaxRecordBytes)
		}
		out[i] = make([]byte, size)
		if _, err := io.ReadFull(r, out[i]); err != nil {
			return nil, nil, err
		}
	}
	return out[0], out[1], nil
}

// checkEquivocation verifies that a and b prove an equivocation in swarm:
// two different contributions, both signed by their peer, for one round.
// "Different" means different signed bodies: what the peer vouched for.
// Two envelopes of one body (a re-encoding, a re-randomised signature) are
// one contribution, and record.Open refuses every envelope but the
// canonical one anyway — otherwise anyone could frame an honest peer.
func checkEquivocation(swarm string, a, b []byte) (*record.Contribution, error) {
	ca, sa, bodyA, err := record.OpenSigned[record.Contribution](a)
	if err != nil {
		return nil, err
	}
	cb, sb, bodyB, err := record.OpenSigned[record.Contribution](b)
	if err != nil {
		return nil, err
	}
	switch {
	case sa != sb || ca.Peer != sa.String() || cb.Peer != sb.String():
		return nil, errors.New("the two contributions are not signed by one peer")
	case ca.Swarm != swarm || cb.Swarm != swarm || ca.Round != cb.Round:
		return nil, errors.New("the two contributions are not for one round of this swarm")
	case bytes.Equal(bodyA, bodyB):
		return nil, errors.New("the two contributions are the same")
	}
	return ca, nil
}

// serveEvidence takes equivocation reports and hands verified ones to
// record; reports that do not verify are dropped.
func serveEvidence(h host.Host, swarm string, record func(c *record.Contribution, a, b []byte)) {
	h.SetStreamHandler(EvidenceProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(evidenceTimeout))
		a, b, err := readEvidence(s)
		if err != nil {
			_ = s.Reset()
			return
		}
		if c, err := checkEquivocation(swarm, a, b); err == nil {
			record(c, a, b)
		}
	})
}

// reportEquivocation sends the proof to the coordinator.
func reportEquivocation(ctx context.Context, h host.Host, to peer.ID, a, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, evidenceTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, to, EvidenceProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(evidenceTimeout))
	return writeEvidence(s, a, b)
}

// equivocationFault is the gate fault a verified equivocation becomes.
func equivocationFault(c *record.Contribution, a, b []byte) gateFault {
	ba, _ := recordBlock(a)
	bb, _ := recordBlock(b)
	return gateFault{peer: c.Peer, blocks: [][]byte{a, b},
		reason:   fmt.Sprintf("%s: two contributions for round %d", verify.ReasonEquivocation, c.Round),
		evidence: ba.Cid().String() + " " + bb.Cid().String()}
}
