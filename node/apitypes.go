package node

import (
	"encoding/json"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// The HTTP API's responses, shared by the server (serveAPI) and its
// clients (cmd): one definition of each, snake_case throughout.

// SwarmResponse is GET /v1/swarm.
type SwarmResponse struct {
	Swarm    string                `json:"swarm"`
	Manifest *record.SwarmManifest `json:"manifest"`
	Config   json.RawMessage       `json:"config"` // the canonical config
	Head     Head                  `json:"head"`
	// Peers are the peers the coordinator is connected to or has scored,
	// by peer ID, with how it reaches each.
	Peers []PeerConn `json:"peers"`
}

// PeerConn is how a node reaches one peer: Path is direct, relayed (only
// through a relay: control traffic, no payloads) or unreachable (no
// connection now); HolePunched says a DCUtR hole punch made the direct
// path.
type PeerConn struct {
	Peer        string `json:"peer"`
	Path        string `json:"path"`
	HolePunched bool   `json:"hole_punched,omitempty"`
}

// RoundResponse is GET /v1/rounds/{n} and /v1/rounds/latest.
type RoundResponse struct {
	CID    string              `json:"cid"`
	Record *record.RoundRecord `json:"record"`
}

// ScoresResponse is GET /v1/scores.
type ScoresResponse struct {
	Swarm  string             `json:"swarm"`
	Scores []record.PeerScore `json:"scores"`
}

// PeerResponse is GET /v1/peers/{id}.
type PeerResponse struct {
	Swarm  string             `json:"swarm"`
	Peer   string             `json:"peer"`
	Rounds []verify.PeerRound `json:"rounds"`
}
