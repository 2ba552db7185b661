package node

import (
	"slices"
	"testing"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node/p2p"
)

// TestRelayModesAgree: config validates network.relay against its list and
// p2p acts on its own constants (config is a leaf and cannot import p2p):
// the two lists must be the same.
func TestRelayModesAgree(t *testing.T) {
	if !slices.Equal(config.RelayModes, p2p.RelayModes) {
		t.Fatalf("config.RelayModes %v, p2p.RelayModes %v", config.RelayModes, p2p.RelayModes)
	}
}
