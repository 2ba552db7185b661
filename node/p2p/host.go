// Package p2p is a swarmtrain node's plumbing: a libp2p host with a
// persistent identity, a Kademlia DHT under /swarmtrain for discovery, and
// gossipsub with strict signing, per-swarm topics, validators and peer
// scoring. The roles that drive rounds sit on top of it.
package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/swarmtrain/swarmtrain/storage"
)

// IdentityFile is the node's private key inside its data dir.
const IdentityFile = "identity.key"

// identityMode is the key file's permission: the key is the node's
// identity in every ledger it signs, so only its owner may read it.
const identityMode fs.FileMode = 0o600

// LoadOrCreateIdentity reads the node's Ed25519 key from dataDir, creating
// it (mode 0600) on first run, so the node keeps its peer ID across
// restarts. A key file others may read or write is refused with a message
// that says how to fix it: whoever can read it can sign as this node.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	b, err := readIdentity(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	// Atomically, so a crash never leaves a torn key (storage.WriteFileAtomic).
	if err := storage.WriteFileAtomic(path, b, identityMode); err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return k, nil
}

// readIdentity reads the key file after checking its mode.
func readIdentity(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&^identityMode != 0 {
		return nil, fmt.Errorf("identity %s has mode %04o: others may read or change this node's key; run `chmod 600 %s` if you trust it, or delete it to get a new peer ID", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityBytes+1))
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	if len(b) > maxIdentityBytes {
		return nil, fmt.Errorf("identity %s: over %d bytes: not a key", path, maxIdentityBytes)
	}
	return b, nil
}

// maxIdentityBytes caps the key file read: an Ed25519 key is 68 bytes.
const maxIdentityBytes = 4 << 10

// Connection manager limits. A swarm of a few hundred peers keeps a mesh of
// ~8 per topic plus DHT neighbours; these leave ample room and trim only
// real floods. Gossipsub protects its mesh peers from trimming itself (its
// tag tracer), and Node.Protect keeps the coordinator.
const (
	connLowWater  = 128
	connHighWater = 256
	connGrace     = time.Minute
)

// Protocols whose streams the resource manager bounds below libp2p's
// defaults. Their handlers live in package node; the IDs are here so the
// host can be built with their limits.
const (
	// EvidenceProtocol carries equivocation proofs to the coordinator.
	EvidenceProtocol = protocol.ID("/swarmtrain/evidence/1")
	// HeadProtocol answers "what is the latest record of this swarm?".
	HeadProtocol = protocol.ID("/swarmtrain/head/1")
	// BlocksProtocol moves whole checkpoint files (storage/transfer, which
	// names it transfer.ID; p2p imports nothing of the project, and a test
	// checks the two agree).
	BlocksProtocol = protocol.ID("/swarmtrain/blocks/1")
)

// DefaultMaxMessageBytes is gossipsub's own default message cap; payloads
// above the inline limit go by CID. A contribution is a gossip message, so
// no contribution — and no frame of equivocation evidence — is larger.
const DefaultMaxMessageBytes = 1 << 20

// Evidence protocol limits. An equivocation proof is two contributions of
// at most DefaultMaxMessageBytes each; the reader holds at most about 2.5
// times that while growing its buffers (node.readEvidenceFrames). Honest
// peers report rarely (an equivocation is a proven fault) and one at a
// time, so a peer needs one stream, and a handful of concurrent reports is
// plenty swarm-wide. Everything past these limits is refused by the
// resource manager before the handler runs, so throwaway identities can
// hold at most EvidenceMemory in all.
const (
	EvidencePeerStreams = 1
	EvidencePeerMemory  = 3 * DefaultMaxMessageBytes
	EvidenceStreams     = 16
	EvidenceMemory      = 32 << 20
)

// Head protocol limits: an answer is a few hundred bytes, asked once per
// join and now and then by observers.
const (
	headPeerStreams = 2
	headStreams     = 64
	headMemory      = 1 << 20
)

// Blocks protocol limits. A fetch uses one stream (transfer.Streams; up to
// 4 with transfer.FetchStreams) and each served stream reserves one block
// (2 MiB) plus its buffers. A peer may run two fetches of 4 streams at once
// (a model and its outer state); all peers
// together get 16 streams, what the server itself serves at once
// (transfer.MaxServing), so throwaway identities cannot hold more than
// blocksMemory of serving buffers.
const (
	blocksPeerStreams = 2 * 4
	blocksStreams     = 16
	blocksMemory      = blocksStreams * (2<<20 + 128<<10)
)

// Limits returns the resource manager limits of a swarmtrain host: libp2p's
// defaults scaled to this machine, with the evidence and head protocols
// bounded as above.
func Limits() rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	bound := func(proto protocol.ID, streams, memory, peerStreams, peerMemory int) {
		limits.AddProtocolLimit(proto, streamLimit(streams, memory), rcmgr.BaseLimitIncrease{})
		limits.AddProtocolPeerLimit(proto, streamLimit(peerStreams, peerMemory), rcmgr.BaseLimitIncrease{})
	}
	bound(EvidenceProtocol, EvidenceStreams, EvidenceMemory, EvidencePeerStreams, EvidencePeerMemory)
	bound(HeadProtocol, headStreams, headMemory, headPeerStreams, headMemory)
	bound(BlocksProtocol, blocksStreams, blocksMemory, blocksPeerStreams, blocksMemory)
	return limits.AutoScale()
}

// streamLimit admits n streams each way (2n in all) and memory bytes.
func streamLimit(n int, memory int) rcmgr.BaseLimit {
	return rcmgr.BaseLimit{StreamsInbound: n, StreamsOutbound: n, Streams: 2 * n, Memory: int64(memory)}
}

// NewHost starts a libp2p host with key on the listen multiaddrs (TCP and
// QUIC), a resource manager with Limits, a connection manager, and the NAT
// traversal of hc (relay mode, announced addresses, hole punching).
//
// TCP listens without SO_REUSEPORT (libp2p's default turns it on): with it,
// a second node started on a port another node holds listens too, the
// kernel splits incoming connections between them, and dials fail with
// "peer id mismatch". Without it a taken port is an error naming it.
func NewHost(key crypto.PrivKey, listen []string, hc HostConfig) (host.Host, error) {
	nat, err := hc.natOptions()
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(connLowWater, connHighWater, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, err
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(Limits()))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(append([]libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.ConnectionManager(cm),
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Transport(quic.NewTransport),
		libp2p.ResourceManager(rm),
	}, nat...)...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("listening on %v: %w (is another node using the address? pick another port or stop it)", listen, err)
	}
	if hc.Paths != nil {
		h.Network().Notify(hc.Paths.Notifee())
	}
	return h, nil
}
