package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// EvidenceProtocol carries proof of an equivocation from the peer that saw
// it to the coordinator: the two signed contributions. Gossip stops the
// second version at the first honest hop, so the coordinator, which may
// have received only the first (relayed after the equivocator lost the
// mesh), would never learn of it. The proof verifies itself; the reporter
// needs no trust. The resource manager bounds its streams and memory
// (p2p.Limits).
const EvidenceProtocol = p2p.EvidenceProtocol

// Evidence stream defaults.
const (
	// evidenceTimeout bounds one report: two records of at most a
	// megabyte each over a live connection.
	evidenceTimeout = 10 * time.Second
	// defaultMaxEvidenceFrame caps one frame. Each frame is a contribution
	// that reached the reporter as a gossip message, so it is no larger
	// than gossipsub's message cap; a swarm configured with a larger cap
	// passes it (withMaxEvidenceFrame). record.MaxRecordBytes (4 MiB, sized
	// for round records) would let one report pin four times more.
	defaultMaxEvidenceFrame = p2p.DefaultMaxMessageBytes
	// evidenceChunk is how much of a frame is read, and reserved with the
	// resource manager, at a time: memory follows the bytes that actually
	// arrived, never a length header's promise.
	evidenceChunk = 32 << 10
)

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

// memoryScope is where readEvidenceFrames accounts for its buffers: a
// stream's resource scope (network.ResourceScope).
type memoryScope interface {
	ReserveMemory(size int, prio uint8) error
	ReleaseMemory(size int)
}

// evidencePriority is the priority of the reader's reservations: the
// protocol's limits (p2p.Limits) are sized for exactly what a report
// needs, so anything under them may be reserved.
const evidencePriority = network.ReservationPriorityAlways

// readEvidenceFrames reads two frames of at most limit bytes each. It grows
// each frame's buffer as bytes arrive, at most doubling it, so what it
// holds is at most about twice what the sender actually sent, plus one
// chunk. If scope is not nil, every buffer is reserved there before it is
// allocated and the one it replaces released after; a refusal ends the
// read. It returns how much stays reserved (the two frames), for the
// caller to release when done with them.
func readEvidenceFrames(r io.Reader, limit int, scope memoryScope) (a, b []byte, reserved int, err error) {
	defer func() {
		if err != nil && scope != nil {
			scope.ReleaseMemory(reserved)
			reserved = 0
		}
	}()
	var out [2][]byte
	for i := range out {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, nil, reserved, err
		}
		size := int(binary.BigEndian.Uint32(n[:]))
		if size > limit {
			return nil, nil, reserved, fmt.Errorf("evidence frame of %d bytes exceeds %d", size, limit)
		}
		buf := []byte{}
		for len(buf) < size {
			if len(buf) == cap(buf) {
				grow := min(size, max(2*cap(buf), evidenceChunk))
				if scope != nil {
					if err := scope.ReserveMemory(grow, evidencePriority); err != nil {
						return nil, nil, reserved, fmt.Errorf("evidence frame: %w", err)
					}
					reserved += grow
				}
				nb := make([]byte, len(buf), grow)
				copy(nb, buf)
				if scope != nil {
					scope.ReleaseMemory(cap(buf))
					reserved -= cap(buf)
				}
				buf = nb
			}
			m, err := r.Read(buf[len(buf):min(size, cap(buf))])
			buf = buf[:len(buf)+m]
			if err != nil && len(buf) < size {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, nil, reserved, err
			}
		}
		out[i] = buf
	}
	return out[0], out[1], reserved, nil
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

// EvidenceRoundAccepted reports whether evidence (or any tier-0 fault) for
// round is worth keeping while current is the open round: only the open
// round and the next. Older rounds are sealed; later ones may never come,
// and a self-equivocation for round 10⁹ would otherwise pin its blocks
// forever.
func EvidenceRoundAccepted(current, round int64) bool {
	return round == current || round == current+1
}

// evidenceOption configures serveEvidence.
type evidenceOption func(*evidenceServer)

// withMaxEvidenceFrame sets the frame cap: the swarm's gossip message cap.
func withMaxEvidenceFrame(n int) evidenceOption {
	return func(e *evidenceServer) {
		if n > 0 {
			e.maxFrame = n
		}
	}
}

// withEvidenceRound keeps only reports for the round current returns or
// the next (EvidenceRoundAccepted).
func withEvidenceRound(current func() int64) evidenceOption {
	return func(e *evidenceServer) { e.round = current }
}

// withEvidenceFrom takes reports only from peers member accepts (those
// seen on the swarm's topics); others are reset before a byte is read.
func withEvidenceFrom(member func(peer.ID) bool) evidenceOption {
	return func(e *evidenceServer) { e.member = member }
}

// topicMembers is a membership test for withEvidenceFrom: peers gossipsub
// knows to be subscribed to one of the swarm's topics. Joining a topic is
// cheap, so this is no identity check; it keeps the evidence stream, and
// the resource manager's budget for it, to peers that take part in the
// swarm's gossip, where their misbehaviour also costs them score.
func topicMembers(ps *pubsub.PubSub, topics ...string) func(peer.ID) bool {
	return func(p peer.ID) bool {
		for _, t := range topics {
			if slices.Contains(ps.ListPeers(t), p) {
				return true
			}
		}
		return false
	}
}

// evidenceServer is the coordinator's side of the evidence protocol.
type evidenceServer struct {
	swarm    string
	maxFrame int
	round    func() int64
	member   func(peer.ID) bool
	record   func(c *record.Contribution, a, b []byte)

	mu   sync.Mutex
	busy map[peer.ID]bool // peers with a report being read
}

// serveEvidence takes equivocation reports and hands verified ones to
// record; reports that do not verify are dropped. A peer has one report
// read at a time (a second stream is reset at once), each frame is read
// incrementally with its memory reserved through the stream's resource
// scope, and the resource manager caps the protocol's streams and memory
// per peer and in all (p2p.Limits).
func serveEvidence(h host.Host, swarm string, record func(c *record.Contribution, a, b []byte), opts ...evidenceOption) {
	e := &evidenceServer{swarm: swarm, maxFrame: defaultMaxEvidenceFrame, record: record, busy: map[peer.ID]bool{}}
	for _, o := range opts {
		o(e)
	}
	h.SetStreamHandler(EvidenceProtocol, e.handle)
}

// Evidence acknowledgements: the coordinator's one-byte answer once it has
// read and checked a report. The reporter waits for it, so a reporter that
// sends one report after another never has its next report refused as
// concurrent with the last.
const (
	evidenceAccepted = 1
	evidenceRefused  = 0
)

func (e *evidenceServer) handle(s network.Stream) {
	from := s.Conn().RemotePeer()
	if e.member != nil && !e.member(from) {
		_ = s.Reset()
		return
	}
	if !e.claim(from) {
		_ = s.Reset()
		return
	}
	released := false
	release := func() {
		if !released {
			released = true
			e.done(from)
		}
	}
	defer release()
	_ = s.SetDeadline(time.Now().Add(evidenceTimeout))
	scope := s.Scope()
	a, b, reserved, err := readEvidenceFrames(s, e.maxFrame, scope)
	if err != nil {
		_ = s.Reset()
		return
	}
	defer scope.ReleaseMemory(reserved)
	ack := byte(evidenceRefused)
	if c, err := checkEquivocation(e.swarm, a, b); err == nil && (e.round == nil || EvidenceRoundAccepted(e.round(), c.Round)) {
		e.record(c, a, b)
		ack = evidenceAccepted
	}
	release() // before answering: the reporter may send its next report at once
	_, _ = s.Write([]byte{ack})
	_ = s.Close()
}

// claim marks p as having a report in progress; false if it already has.
func (e *evidenceServer) claim(p peer.ID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.busy[p] {
		return false
	}
	e.busy[p] = true
	return true
}

func (e *evidenceServer) done(p peer.ID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.busy, p)
}

// errEvidenceRefused is the coordinator's answer to a report that did not
// prove an equivocation it keeps.
var errEvidenceRefused = errors.New("the coordinator refused the evidence")

// reportEquivocation sends the proof to the coordinator and waits for its
// answer. A coordinator that closes without answering (an older version)
// counts as having taken it.
func reportEquivocation(ctx context.Context, h host.Host, to peer.ID, a, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, evidenceTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, to, EvidenceProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(evidenceTimeout))
	if err := writeEvidence(s, a, b); err != nil {
		_ = s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return err
	}
	var ack [1]byte
	switch _, err := io.ReadFull(s, ack[:]); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	case ack[0] != evidenceAccepted:
		return errEvidenceRefused
	}
	return nil
}

// equivocationFault is the gate fault a verified equivocation becomes.
func equivocationFault(c *record.Contribution, a, b []byte) gateFault {
	ba, _ := recordBlock(a)
	bb, _ := recordBlock(b)
	return gateFault{peer: c.Peer, blocks: [][]byte{a, b},
		reason:   fmt.Sprintf("%s: two contributions for round %d", verify.ReasonEquivocation, c.Round),
		evidence: ba.Cid().String() + " " + bb.Cid().String()}
}
