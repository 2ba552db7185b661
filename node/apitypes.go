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

// RoundsResponse is GET /v1/rounds: every sealed round, oldest first, as
// the dashboard's curve and ledger browser read them.
type RoundsResponse struct {
	Swarm  string `json:"swarm"`
	Params int    `json:"params"` // the model's parameter count
	// DenseBytes is what one contribution weighs as dense fp32 (4 bytes a
	// parameter): the figure the bytes a round received are set against.
	DenseBytes int `json:"dense_bytes"`
	// InitialModel is the model round 0 started from.
	InitialModel string       `json:"initial_model"`
	Rounds       []RoundPoint `json:"rounds"`
}

// RoundPoint is one sealed round in GET /v1/rounds.
type RoundPoint struct {
	RoundSummary
	// DenseBytes is what the payloads the round received (Payloads of
	// them) would have weighed as dense fp32.
	DenseBytes int `json:"dense_bytes"`
	// Evaluated: TestLoss and TestAccuracy were measured (the coordinator
	// has a test set and sealed the round since it started).
	Evaluated bool `json:"evaluated"`
	// Restored: the round was sealed before the coordinator restarted; only
	// what its record holds is known (no losses, no bytes).
	Restored bool `json:"restored"`
}

// PeersResponse is GET /v1/peers: the coordinator's connected peers and
// every peer the ledger scores.
type PeersResponse struct {
	Swarm string     `json:"swarm"`
	Peers []PeerInfo `json:"peers"`
}

// PeerInfo is one peer in GET /v1/peers.
type PeerInfo struct {
	Peer string `json:"peer"`
	// Connection is direct when any connection to the peer is direct,
	// relayed when all go through a circuit relay (/p2p-circuit), none when
	// the coordinator has no connection to it now.
	Connection  string            `json:"connection"`
	Connections []Conn            `json:"connections"`
	Score       *record.PeerScore `json:"score,omitempty"` // nil: no contribution in the ledger
}

// Conn is one open connection to a peer.
type Conn struct {
	Addr      string `json:"addr"` // the peer's end, as a multiaddr
	Kind      string `json:"kind"` // direct or relayed
	Direction string `json:"direction"`
}

// Connection kinds in PeerInfo and Conn.
const (
	ConnDirect  = "direct"
	ConnRelayed = "relayed"
	ConnNone    = "none"
)

// ModelResponse is GET /v1/models/{cid}: a model of the ledger, the round
// that made it, and where to download its checkpoint.
type ModelResponse struct {
	CID    string `json:"cid"`
	Round  int64  `json:"round"`  // -1: the initial model
	Record string `json:"record"` // the round's record; "" for the initial model
	Bytes  int    `json:"bytes"`  // the checkpoint file's size
	File   string `json:"file"`   // the API path serving the safetensors file
}
