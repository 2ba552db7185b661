package node

import (
	"time"

	"github.com/ipfs/go-cid"
)

// Event is something a role reports as it runs: cmd formats events for
// people (or as JSON lines for programs), tests wait on them. Roles never
// write progress text themselves.
type Event interface{ event() }

// Resumed: a coordinator picked its swarm up from its data dir.
type Resumed struct {
	Swarm string
	After int64 // the last sealed round
}

// Waiting: a round's deadline passed without min_contributions; the
// coordinator keeps waiting, a deadline at a time.
type Waiting struct {
	Round      int64
	Have, Need int
	Waited     time.Duration // since the round opened
}

// Finished: a coordinator sealed its last round, or a contributor applied
// it.
type Finished struct {
	Swarm  string
	Rounds int
	Model  cid.Cid // the final model
}

// Serving: the coordinator goes on serving the ledger, blocks and API
// until it is closed.
type Serving struct{}

// Joined: a contributor fetched the manifest and the state it starts from.
type Joined struct {
	Swarm, Name, Peer string
	Round             int64
}

// Worked: a contributor finished a round's local work and announced it.
type Worked struct {
	Round          int64
	Steps, Samples int
	Loss           float64
	Bytes          int           // the signed contribution's size
	Compute        time.Duration // wall time of the local work (H steps, compression)
}

// Applied: a contributor applied a sealed round. Replayed says whether its
// own replay (round.Replay) hashed to the record's model; otherwise it
// fetched the model by CID.
type Applied struct {
	Round    int64
	Model    cid.Cid
	Replayed bool
}

// Refused: a contributor refused a sealed round's model (it did not
// decode, or held a non-finite value) and keeps its state.
type Refused struct {
	Round  int64
	Reason string
}

func (Resumed) event()  {}
func (Waiting) event()  {}
func (Finished) event() {}
func (Serving) event()  {}
func (Joined) event()   {}
func (Worked) event()   {}
func (Applied) event()  {}
func (Refused) event()  {}
