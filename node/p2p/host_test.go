package p2p

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

// portOf returns the port a host listens on for proto (tcp, udp).
func portOf(t *testing.T, addrs []ma.Multiaddr, proto int) string {
	t.Helper()
	for _, a := range addrs {
		if v, err := a.ValueForProtocol(proto); err == nil {
			return v
		}
	}
	t.Fatalf("no %d address in %v", proto, addrs)
	return ""
}

// TestSecondNodeOnATakenPortFails: two swarmtrain nodes on one port — a
// resumed coordinator started while the old one still runs — must not
// both listen (SO_REUSEPORT would let them, splitting connections between
// two identities); the second fails naming the port.
func TestSecondNodeOnATakenPortFails(t *testing.T) {
	k1, _ := LoadOrCreateIdentity(t.TempDir())
	first, err := NewHost(k1, []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}, HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	tcpAddr := "/ip4/127.0.0.1/tcp/" + portOf(t, first.Addrs(), ma.P_TCP)
	quicAddr := "/ip4/127.0.0.1/udp/" + portOf(t, first.Addrs(), ma.P_UDP) + "/quic-v1"
	for _, addr := range []string{tcpAddr, quicAddr} {
		k2, _ := LoadOrCreateIdentity(t.TempDir())
		second, err := NewHost(k2, []string{addr}, HostConfig{})
		if err == nil {
			second.Close()
			t.Errorf("a second node listens on %s, which the first holds", addr)
			continue
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error does not name %s: %v", addr, err)
		}
	}
}

// TestIdentityFileIsPrivateAndAtomic: the key is written 0600 through a
// temp file that does not outlive the write, a stale temp from a crash is
// harmless, and a key file others can read is refused with the fix.
func TestIdentityFileIsPrivateAndAtomic(t *testing.T) {
	dir := t.TempDir()
	// A crash of an older version left its fixed-name temp behind.
	if err := os.WriteFile(filepath.Join(dir, IdentityFile+".tmp"), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, IdentityFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("identity mode %04o, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
	again, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(k)
	id2, _ := peer.IDFromPrivateKey(again)
	if id1 != id2 {
		t.Fatal("identity changed on reload")
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateIdentity(dir)
	if err == nil || !strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	// Not silently replaced either: the file is still the old key.
	b, _ := os.ReadFile(path)
	if len(b) == 0 {
		t.Fatal("key file emptied")
	}
	if !bytes.Equal(b, before) {
		t.Fatal("a refused key file was replaced")
	}
}

// TestTransferProtocolIsLimited: the resource manager bounds the blocks
// protocol's streams per peer and in all, under the ID storage/transfer
// serves.
func TestTransferProtocolIsLimited(t *testing.T) {
	if BlocksProtocol != transfer.ID {
		t.Fatalf("p2p limits %s, storage/transfer serves %s", BlocksProtocol, transfer.ID)
	}
	l := rcmgr.NewFixedLimiter(Limits())
	peerLimit := l.GetProtocolPeerLimits(BlocksProtocol)
	all := l.GetProtocolLimits(BlocksProtocol)
	if got := peerLimit.GetStreamLimit(network.DirInbound); got < 2*transfer.Streams {
		t.Errorf("inbound blocks streams per peer: %d, fewer than two fetches' (%d)", got, 2*transfer.Streams)
	}
	if got := all.GetStreamLimit(network.DirInbound); got != transfer.MaxServing {
		t.Errorf("inbound blocks streams in all: %d, want what the server serves (%d)", got, transfer.MaxServing)
	}
	if got := all.GetMemoryLimit(); got < int64(transfer.MaxServing)*transfer.MaxBlockBytes {
		t.Errorf("blocks memory %d cannot hold %d served blocks", got, transfer.MaxServing)
	}
}
