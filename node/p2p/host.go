// Package p2p is a swarmtrain node's plumbing: a libp2p host with a
// persistent identity, a Kademlia DHT under /swarmtrain for discovery, and
// gossipsub with strict signing, per-swarm topics, validators and peer
// scoring. The roles that drive rounds sit on top of it.
package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
)

// IdentityFile is the node's private key inside its data dir.
const IdentityFile = "identity.key"

// LoadOrCreateIdentity reads the node's Ed25519 key from dataDir, creating
// it (mode 0600) on first run, so the node keeps its peer ID across restarts.
func LoadOrCreateIdentity(dataDir string) (crypto.PrivKey, error) {
	path := filepath.Join(dataDir, IdentityFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("identity: %w", err)
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
	// Write then rename, so a crash never leaves a half-written key.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return k, nil
}

// Connection manager limits. A swarm of a few hundred peers keeps a mesh of
// ~8 per topic plus DHT neighbours; these leave ample room and trim only
// real floods.
const (
	connLowWater  = 128
	connHighWater = 256
	connGrace     = time.Minute
)

// NewHost starts a libp2p host with key on the listen multiaddrs (TCP and
// QUIC), the default resource manager, and a connection manager.
func NewHost(key crypto.PrivKey, listen []string) (host.Host, error) {
	cm, err := connmgr.NewConnManager(connLowWater, connHighWater, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.ConnectionManager(cm),
		libp2p.DefaultTransports,
		libp2p.DefaultResourceManager,
	)
	if err != nil {
		return nil, fmt.Errorf("listening on %v: %w (is another node using the address?)", listen, err)
	}
	return h, nil
}
