// Package record defines swarmtrain's records — the swarm manifest, the
// contribution manifest and the round record — as IPLD schemas, and signs
// them with the author's libp2p key.
//
// A record block is the dag-cbor encoding of a signed envelope: the record
// kind, the record itself as a map (body), the author's public key and a
// signature over "swarmtrain/record/v2" || 0 || kind || 0 || the canonical
// dag-cbor encoding of body. That is the construction of a libp2p signed
// envelope (domain separation, payload type, payload) kept as plain IPLD,
// so every reference a record makes (models, the previous record, the
// contributions, their payloads, evidence, the initial model) is a CID
// link that go-ipld-prime, `ipfs dag get <record>/body/model` and
// `ipfs pin add --recursive <record>` follow.
package record

import (
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/schema"
)

// Kinds of records, as written in Signed.Kind.
const (
	KindSwarm        = "swarm"
	KindContribution = "contribution"
	KindRound        = "round"
)

// schemaDSL is the IPLD schema of every record. Fields are only ever added,
// as optional, so records keep decoding. The three Signed types are one
// envelope around each kind of body.
const schemaDSL = `
type SignedSwarm struct {
	kind String
	body SwarmManifest
	signer Bytes
	sig Bytes
}

type SignedContribution struct {
	kind String
	body Contribution
	signer Bytes
	sig Bytes
}

type SignedRound struct {
	kind String
	body RoundRecord
	signer Bytes
	sig Bytes
}

type SwarmManifest struct {
	name String
	config Bytes
	coordinator String
	created Int
	initialModel Link
	seed Int
}

type Contribution struct {
	swarm String
	round Int
	peer String
	base Link
	payload Link
	inline optional Bytes
	codec String
	payloadBytes Int
	samples Int
	loss Float
	created Int
	seed optional Int
	start optional Link
	end optional Link
	peerAudit optional PeerVerdict
}

type PeerVerdict struct {
	round Int
	peer String
	contribution Link
	pass Bool
	payloadDistance optional Float
	endDistance optional Float
	fault String
}

type Entry struct {
	peer String
	contribution Link
	payload Link
	verdict String
	reason String
	evidence String
	score Float
	weight Float
	norm Float
	loss Float
	samples Int
	tier2 optional Tier2
	evidenceBlocks optional [Link]
	audit optional Audit
	referee optional Referee
	density optional Float
}

type Referee struct {
	peer String
	audit Audit
}

type Audit struct {
	start Link
	payload optional Link
	end optional Link
	fault String
	payloadDistance optional Float
	endDistance optional Float
}

type Tier2 struct {
	ownBefore Float
	ownAfter Float
	randomBefore Float
	randomAfter Float
	heldBefore Float
	heldAfter Float
	reference Float
}

type ReasonCount struct {
	reason String
	count Int
}

type PeerScore struct {
	peer String
	score Float
	accepted Int
	rejected Int
	lastRound Int
	rejections optional [ReasonCount]
	excludedUntil optional Int
	thinning optional Thinning
}

type Thinning struct {
	halvings Int
	accepted Int
}

type RoundRecord struct {
	swarm String
	round Int
	prev optional Link
	seed Int
	base Link
	model Link
	outerState optional Link
	entries [Entry]
	scores [PeerScore]
	sealed Int
	sampleSeed optional Int
	sampleSize optional Int
	auditSeed optional Int
	auditSize optional Int
}
`

// envelope is the block every record is stored as: SignedSwarm,
// SignedContribution or SignedRound, by T.
type envelope[T Body] struct {
	Kind   string
	Body   T
	Signer []byte
	Sig    []byte
}

// SwarmManifest defines a swarm; its block's CID is the swarm ID.
type SwarmManifest struct {
	Name         string  `json:"name"`
	Config       []byte  `json:"config"`      // config.Swarm.Canonical()
	Coordinator  string  `json:"coordinator"` // peer ID of the coordinator
	Created      int64   `json:"created"`     // unix milliseconds
	InitialModel cid.Cid `json:"initial_model"`
	Seed         int64   `json:"seed"`
}

// Contribution is a contributor's signed announcement of its update for a round.
type Contribution struct {
	Swarm        string  `json:"swarm"`
	Round        int64   `json:"round"`
	Peer         string  `json:"peer"`
	Base         cid.Cid `json:"base"`             // the model the work started from
	Payload      cid.Cid `json:"payload"`          // the encoded update (gradient wire format), a raw block
	Inline       *[]byte `json:"inline,omitempty"` // the payload itself when small enough to ride along
	Codec        string  `json:"codec"`
	PayloadBytes int64   `json:"payload_bytes"`
	Samples      int64   `json:"samples"`
	Loss         float64 `json:"loss"`
	Created      int64   `json:"created"`
	// Seed is the round seed the contributor drew its shard with
	// (data.Assign(seed, peer)); tier 0 checks it is the round's.
	Seed *int64 `json:"seed,omitempty"`
	// Start and End commit to the contributor's private state (its
	// error-feedback residual and inner optimizer state, one vector file,
	// round.Worker.State) before and after this round's local work: what a
	// tier-3 audit replays from and must end at. Start must be End of the
	// peer's previous contribution in the ledger (the zero state for its
	// first), so the state is hash-chained. Nil for a peer that does not
	// commit (a swarm without audits).
	Start *cid.Cid `json:"start,omitempty"`
	End   *cid.Cid `json:"end,omitempty"`
	// PeerAudit is the contributor's signed verdict on the contribution
	// it was assigned to recompute from the previous round
	// (round.PeerAuditAssignment); nil when it audited none.
	PeerAudit *PeerVerdict `json:"peer_audit,omitempty"`
}

// PeerVerdict is one contributor's verdict on another's contribution of
// the previous round, recomputed from that peer's committed start state
// (round.DataAuditor): Pass says whether the replay fell within the
// swarm's audit tolerance; the distances and Fault are what the replay
// measured (as in Audit).
type PeerVerdict struct {
	Round           int64    `json:"round"`
	Peer            string   `json:"peer"`
	Contribution    cid.Cid  `json:"contribution"`
	Pass            bool     `json:"pass"`
	PayloadDistance *float64 `json:"payload_distance,omitempty"`
	EndDistance     *float64 `json:"end_distance,omitempty"`
	Fault           string   `json:"fault"`
}

// Referee is the coordinator's own recomputation of the contribution a
// peer's verdict judged (Peer, in the previous round), when the verdict
// said fail or disagreed with the coordinator's audit: the loser — the
// audited peer or the accuser — takes a proven fault.
type Referee struct {
	Peer  string `json:"peer"`
	Audit Audit  `json:"audit"`
}

// Entry is one contribution's fate in a round record.
type Entry struct {
	Peer         string  `json:"peer"`
	Contribution cid.Cid `json:"contribution"`
	Payload      cid.Cid `json:"payload"`
	Verdict      string  `json:"verdict"`  // accepted or rejected
	Reason       string  `json:"reason"`   // why it was rejected; "" when accepted
	Evidence     string  `json:"evidence"` // what an observer needs to re-check the verdict
	Score        float64 `json:"score"`
	Weight       float64 `json:"weight"`
	Norm         float64 `json:"norm"`
	Loss         float64 `json:"loss"`
	Samples      int64   `json:"samples"`
	// Tier2 holds the losses behind a tier-2 check; nil when the
	// contribution was not sampled.
	Tier2 *Tier2 `json:"tier2,omitempty"`
	// EvidenceBlocks links the blocks that prove the verdict — both signed
	// contributions of an equivocation — so that pinning a record pins its
	// proof; nil when the evidence is not a block.
	EvidenceBlocks *[]cid.Cid `json:"evidence_blocks,omitempty"`
	// Audit is the evidence of a tier-3 recomputation; nil when the
	// contribution was not audited.
	Audit *Audit `json:"audit,omitempty"`
	// Referee is the recomputation that settled this peer's verdict on
	// another's previous contribution; nil when none was needed.
	Referee *Referee `json:"referee,omitempty"`
	// Density is the top-k density this contribution was held to when it
	// is not the swarm's (round.Params.DensityFor: its author's payloads
	// could not be fetched in time in earlier rounds); nil otherwise.
	Density *float64 `json:"density,omitempty"`
}

// Audit is what replaying a contribution's local work gave (round.Audit):
// from the committed start state, on the round's base, shard and seed. The
// contribution passes when Fault is empty and both distances are within
// the swarm's audit tolerance (a record without distances, sealed before
// they existed: when Payload and End are the ones it names).
type Audit struct {
	Start cid.Cid `json:"start"`
	// Payload and End are the replay's payload CID and end-state CID; nil
	// when the replay could not run (Fault says why).
	Payload *cid.Cid `json:"payload,omitempty"`
	End     *cid.Cid `json:"end,omitempty"`
	// Fault is why the start state itself is refused (unavailable,
	// malformed, out of bounds); "" when it is fine.
	Fault string `json:"fault"`
	// PayloadDistance is the relative L2 distance of the decoded payload
	// the contribution sent from the replay's; EndDistance the same for its
	// committed end state (round.StateDistance). 0 when the CIDs agree;
	// nil when the replay could not run. A recheck on another build
	// reproduces the side of the tolerance, not the figure.
	PayloadDistance *float64 `json:"payload_distance,omitempty"`
	EndDistance     *float64 `json:"end_distance,omitempty"`
}

// Tier2 is the evidence of one tier-2 check: mean losses of the round's base
// model before and after applying the contribution's update alone, on the
// contributor's own shard, on a random shard of the training set and on
// held-out data (see verify.Tier2).
type Tier2 struct {
	OwnBefore    float64 `json:"own_before"`
	OwnAfter     float64 `json:"own_after"`
	RandomBefore float64 `json:"random_before"`
	RandomAfter  float64 `json:"random_after"`
	HeldBefore   float64 `json:"held_before"`
	HeldAfter    float64 `json:"held_after"`
	// Reference is the held-out loss decrease of the round's aggregate of
	// tier-1-accepted updates, applied alone: the scale an honest update's
	// own-shard improvement is measured against.
	Reference float64 `json:"reference"`
}

// ReasonCount counts a peer's rejections of one kind (the reason's first word).
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// PeerScore is a peer's standing after a round.
type PeerScore struct {
	Peer      string  `json:"peer"`
	Score     float64 `json:"score"`
	Accepted  int64   `json:"accepted"`
	Rejected  int64   `json:"rejected"`
	LastRound int64   `json:"last_round"`
	// Rejections counts rejections by kind, sorted by kind.
	Rejections *[]ReasonCount `json:"rejections,omitempty"`
	// ExcludedUntil is the first round the peer's contributions count
	// again after a proven fault (round.Params.Exclusion); nil when never
	// excluded.
	ExcludedUntil *int64 `json:"excluded_until,omitempty"`
	// Thinning is how far the peer's density is lowered for its next
	// contribution (round.Params.DensityFor); nil when it is not.
	Thinning *Thinning `json:"thinning,omitempty"`
}

// Thinning lowers a peer's density after rounds its payload could not be
// fetched in time: Halvings halvings of the swarm's density, and Accepted
// accepted rounds since the last change (round.Params.Thin steps back up
// after enough of them).
type Thinning struct {
	Halvings int64 `json:"halvings"`
	Accepted int64 `json:"accepted"`
}

// RoundRecord is the ledger entry the coordinator seals for each round.
type RoundRecord struct {
	Swarm      string      `json:"swarm"`
	Round      int64       `json:"round"`
	Prev       *cid.Cid    `json:"prev,omitempty"`        // the previous round's record; nil for round 0
	Seed       int64       `json:"seed"`                  // the seed of the next round
	Base       cid.Cid     `json:"base"`                  // the model the round started from
	Model      cid.Cid     `json:"model"`                 // the model after the round
	OuterState *cid.Cid    `json:"outer_state,omitempty"` // the outer optimizer's state after the round
	Entries    []Entry     `json:"entries"`
	Scores     []PeerScore `json:"scores"`
	Sealed     int64       `json:"sealed"` // unix milliseconds
	// SampleSeed and SampleSize say how the tier-2 sample was drawn
	// (verify.Sample); nil when tier 2 did not run.
	SampleSeed *int64 `json:"sample_seed,omitempty"`
	SampleSize *int64 `json:"sample_size,omitempty"`
	// AuditSeed and AuditSize say how the round's tier-3 audits were
	// drawn (round.AuditSeed, at most AuditSize of them); nil when no
	// audit ran.
	AuditSeed *int64 `json:"audit_seed,omitempty"`
	AuditSize *int64 `json:"audit_size,omitempty"`
}

// typeSystem is the parsed schema: computed once, never changed.
var typeSystem = sync.OnceValue(func() *schema.TypeSystem {
	ts, err := ipld.LoadSchemaBytes([]byte(schemaDSL))
	if err != nil {
		panic(fmt.Sprintf("record: bad schema: %v", err))
	}
	return ts
})

func typeOf(name string) schema.Type { return typeSystem().TypeByName(name) }
