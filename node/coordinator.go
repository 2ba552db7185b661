package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// CoordinatorConfig configures a Coordinator.
type CoordinatorConfig struct {
	Swarm   *config.Swarm
	DataDir string
	Test    *data.Set // held-out set for per-round accuracy and tier 2; nil skips both
	// Train is the training set contributors draw their shards from; tier
	// 2 evaluates sampled updates on their shards. nil skips tier 2.
	Train *data.Set
	Log   *slog.Logger
	// Ready is called once the swarm is up, with its ID, the addresses
	// contributors can bootstrap from and the HTTP API's address ("" if off).
	Ready func(swarmID string, addrs []string, api string)
	// RoundDone is called after each sealed round.
	RoundDone func(RoundSummary)
	// Event is told of everything else the coordinator does (Resumed,
	// Waiting, Finished, Serving).
	Event func(Event)
	// ExitWhenDone ends the coordinator once the last round is sealed;
	// otherwise it keeps serving the head, blocks and API to observers
	// until it is closed.
	ExitWhenDone bool
}

// Why a round closed, in RoundSummary.SealedBy.
const (
	SealedByQuorum   = "quorum"
	SealedByDeadline = "deadline"
)

// RoundSummary is what a sealed round reports.
type RoundSummary struct {
	Round        int64         `json:"round"`
	Record       string        `json:"record"`
	Model        string        `json:"model"`
	Accepted     int           `json:"accepted"`
	Rejected     int           `json:"rejected"`
	MeanLoss     float64       `json:"train_loss"`
	TestLoss     float64       `json:"test_loss"`
	TestAccuracy float64       `json:"test_accuracy"`
	BytesIn      int           `json:"bytes_in"`
	Payloads     int           `json:"payloads"` // contributions whose payload arrived (BytesIn is theirs)
	SealTime     time.Duration `json:"seal_time_ns"`
	SealedBy     string        `json:"sealed_by"` // quorum or deadline
}

// Coordinator is the node a researcher starts: it defines the swarm,
// collects contributions, has the round engine judge and apply them, and
// seals the ledger. NewCoordinator opens it, Start runs it, Close stops it.
type Coordinator struct {
	*base
	cfg      CoordinatorConfig
	sc       *config.Swarm
	p        round.Params
	manifest *record.SwarmManifest
	swarmID  string
	gate     *roundGate
	contribs *pubsub.Topic
	rounds   *pubsub.Topic
	sub      *pubsub.Subscription
	metrics  *metrics
	model    train.Model // scratch for tier 2 and the per-round evaluation
	tier2    round.Tier2
	audit    round.Auditor // nil unless verify.audits > 0
	incoming chan *pubsub.Message
	provides chan cid.Cid // sealed checkpoints to announce on the DHT (provideLoop)

	// Owned by the round loop.
	st           round.State
	early        []*pubsub.Message // contributions to a round not yet open, in arrival order
	warnedQuorum bool

	ctx       context.Context // the coordinator's lifetime: Close cancels it
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	err       error
	closeOnce sync.Once

	mu      sync.Mutex // guards what the API, head protocol and gossip score read
	head    Head
	byRound map[int64]cid.Cid
	scores  map[string]record.PeerScore
	// faults is each peer's proven faults (only peers with some), keyed
	// by peer ID for appScore: gossipsub asks for every peer's score on
	// every refresh and many messages, and encoding the ID to look it up
	// in scores was 7.5 % of the coordinator's CPU in a 64-peer swarm
	// (benchmarks/scale, -cpuprofile).
	faults map[peer.ID]int64
	// history is every sealed round as GET /v1/rounds shows it, oldest
	// first; models maps each model of the ledger to the round that made
	// it (-1: the initial model), for GET /v1/models/{cid}.
	history []RoundPoint
	models  map[cid.Cid]int64
	dense   int // one contribution as dense fp32, in bytes
}

// received is one contribution as collected, in arrival order.
type received struct {
	rec     *record.Contribution
	block   blocks.Block
	payload []byte // nil: could not be fetched
	// fault and evidence carry a proven tier-0 fault (from the gate).
	fault, evidence string
}

// NewCoordinator opens the coordinator's data dir and host and creates (or
// resumes) its swarm. It starts nothing that runs rounds: Start does.
func NewCoordinator(cfg CoordinatorConfig, opts ...Option) (*Coordinator, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	sc := cfg.Swarm
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, sc: sc, p: round.ParamsOf(sc), byRound: map[int64]cid.Cid{}, scores: map[string]record.PeerScore{}, faults: map[peer.ID]int64{}, metrics: newMetrics(),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), incoming: make(chan *pubsub.Message, 256),
		provides: make(chan cid.Cid, provideQueue)}
	fail := func(err error) (*Coordinator, error) {
		cancel()
		if c.model != nil {
			c.model.Close()
		}
		if c.base != nil {
			c.base.close()
		}
		return nil, err
	}
	if _, err := c.p.NewOuter(0); err != nil {
		return fail(err)
	}
	b, err := openBase(ctx, cfg.DataDir, sc.Network.Listen, reach{relay: sc.Network.Relay, announce: sc.Network.Announce, bootstrap: sc.Network.Bootstrap}, o, cfg.Log, p2p.WithMaxMessageSize(sc.Network.MaxMessageBytes), p2p.WithAppScore(c.appScore))
	if err != nil {
		return fail(err)
	}
	c.base = b
	if c.model, err = train.New(c.p.Model, sc.Train.BatchSize, sc.Seed); err != nil {
		return fail(err)
	}
	c.dense = 4 * c.model.NumParams()
	// Every late joiner fetches the newest checkpoint right after its seal:
	// keep the last two in memory (storage.DefaultHotBytes covers small
	// models; a checkpoint is its float32 parameters plus a small header).
	c.store.SetHotBytes(max(storage.DefaultHotBytes, 2*(c.dense+1<<20)))
	if err := c.restore(); err != nil {
		return fail(err)
	}
	c.tier2 = &timedTier2{Tier2: &round.DataTier2{Model: c.model, Train: cfg.Train, Test: cfg.Test, ShardSize: sc.Train.ShardSize, SampleSize: sc.Verify.Tier2Sample},
		observe: func(d time.Duration, n int) { c.metrics.tier2Seconds.Observe(d.Seconds() / float64(n)) }}
	if c.p.Audits > 0 && cfg.Train != nil {
		// Tier 3 replays on the same scratch model: the round loop uses
		// it for one thing at a time.
		c.audit = &round.DataAuditor{P: c.p, Model: c.model, Train: cfg.Train, Audits: c.p.Audits, File: c.fetchFile,
			Payload: func(ctx context.Context, pc cid.Cid) ([]byte, error) {
				b, err := c.fetchBlock(ctx, pc)
				if err != nil {
					return nil, err
				}
				return b.RawData(), nil
			}}
	}
	c.gate = newRoundGate(c.swarmID, c.model.NumParams())
	if c.contribs, err = c.net.JoinTopic(p2p.TopicName(c.swarmID, topicContributions), c.gate.validate); err != nil {
		return fail(err)
	}
	if c.sub, err = c.contribs.Subscribe(); err != nil {
		return fail(err)
	}
	if c.rounds, err = c.net.JoinTopic(p2p.TopicName(c.swarmID, topicRounds), roundsValidator(c.swarmID, c.id, nil)); err != nil {
		return fail(err)
	}
	return c, nil
}

// SwarmID is the swarm's ID (its manifest's CID).
func (c *Coordinator) SwarmID() string { return c.swarmID }

// Start serves the swarm's protocols and API and runs its rounds in the
// background until the last one is sealed (ExitWhenDone) or Close.
func (c *Coordinator) Start() error {
	serveHead(c.net.Host, c.currentHead)
	// Reports of equivocations: from swarm members only, for the open or
	// the next round (the gate keeps no other), frames no larger than a
	// gossip message.
	serveEvidence(c.net.Host, c.swarmID, func(rec *record.Contribution, a, b []byte) {
		c.gate.addFault(rec.Round, equivocationFault(rec, a, b))
	}, withEvidenceRound(c.gate.round.Load),
		withMaxEvidenceFrame(c.sc.Network.MaxMessageBytes),
		withEvidenceFrom(topicMembers(c.net.PubSub, p2p.TopicName(c.swarmID, topicContributions), p2p.TopicName(c.swarmID, topicRounds))))
	c.net.Discover(c.ctx, c.swarmID, nil)
	if len(c.sc.Network.Bootstrap) > 0 {
		if err := c.net.Bootstrap(c.ctx, c.sc.Network.Bootstrap); err != nil {
			c.log.Warn("network.bootstrap", "err", err)
		}
	}
	if err := c.ex.Provide(c.ctx, c.manifestCID()); err != nil {
		c.log.Debug("provide manifest", "err", err)
	}
	api := ""
	if c.sc.API.Listen != "" {
		var err error
		if api, err = c.serveAPI(c.ctx, c.sc.API.Listen); err != nil {
			return err
		}
	}
	if c.cfg.Ready != nil {
		c.cfg.Ready(c.swarmID, c.Addrs(), api)
	}
	c.wg.Go(c.provideLoop)
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		defer close(c.incoming)
		for {
			m, err := c.sub.Next(c.ctx)
			if err != nil {
				return
			}
			select {
			case c.incoming <- m:
			case <-c.ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer c.wg.Done()
		defer close(c.done)
		c.err = c.run()
	}()
	return nil
}

// Done is closed when the coordinator stops running rounds: its last round
// is sealed (with ExitWhenDone), it failed, or it was closed.
func (c *Coordinator) Done() <-chan struct{} { return c.done }

// Err is why the coordinator stopped, once Done is closed: nil when it
// sealed its last round, the context's error when it was closed.
func (c *Coordinator) Err() error { return c.err }

// Close stops the coordinator: it cancels everything it started, waits for
// its goroutines (the round loop, the API server) to return, then closes
// the host and the store, in that order.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.sub.Cancel()
		c.model.Close()
		c.base.close()
	})
	return nil
}

// RunCoordinator runs a coordinator until its last round is sealed (with
// cfg.ExitWhenDone), it fails, or ctx ends.
func RunCoordinator(ctx context.Context, cfg CoordinatorConfig, opts ...Option) error {
	c, err := NewCoordinator(cfg, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	case <-c.Done():
		return c.Err()
	}
}

func (c *Coordinator) emit(e Event) {
	if c.cfg.Event != nil {
		c.cfg.Event(e)
	}
}

// run is the round loop: collect, seal, report; then serve until closed.
func (c *Coordinator) run() error {
	rounds := int64(c.sc.Train.Rounds)
	for c.st.Round < rounds {
		r := c.st.Round
		built, _ := c.p.Built(c.st)
		c.gate.open(r, built, c.st.Seed)
		got, by, err := c.collect(r)
		if err != nil {
			return err
		}
		sum, err := c.seal(got)
		if err != nil {
			return fmt.Errorf("sealing round %d: %w", r, err)
		}
		sum.SealedBy = by
		if c.cfg.Test != nil {
			if err := c.model.WriteParams(c.st.Params); err != nil {
				return err
			}
			sum.TestLoss, sum.TestAccuracy, _ = c.model.Evaluate(c.cfg.Test)
		}
		c.metrics.roundSealed(sum)
		c.mu.Lock()
		c.history = append(c.history, RoundPoint{RoundSummary: sum, DenseBytes: sum.Payloads * c.dense, Evaluated: c.cfg.Test != nil})
		c.mu.Unlock()
		if c.cfg.RoundDone != nil {
			c.cfg.RoundDone(sum)
		}
	}
	c.emit(Finished{Swarm: c.swarmID, Rounds: c.sc.Train.Rounds, Model: c.st.Base})
	if !c.cfg.ExitWhenDone {
		c.emit(Serving{})
		<-c.ctx.Done()
	}
	return nil
}

func (c *Coordinator) manifestCID() cid.Cid {
	mc, _ := cid.Decode(c.swarmID)
	return mc
}

// restore loads the swarm from the data dir, or creates it, and sets the
// state the next round starts from.
func (c *Coordinator) restore() error {
	ctx, sc := c.ctx, c.sc
	canon, err := sc.Canonical()
	if err != nil {
		return err
	}
	n := c.model.NumParams()
	mc, err := c.store.Head(ctx, storage.HeadSwarm)
	if errors.Is(err, storage.ErrNoHead) {
		file, err := round.CheckpointFile(c.p.Model, train.Snapshot(c.model))
		if err != nil {
			return err
		}
		initCID, err := putFile(ctx, c.ex, file)
		if err != nil {
			return err
		}
		c.manifest = &record.SwarmManifest{Name: sc.Name, Config: canon, Coordinator: c.id.String(), Created: time.Now().UnixMilli(), InitialModel: initCID, Seed: int64(sc.Seed)}
		blk, err := record.Sign(c.key, c.manifest)
		if err != nil {
			return err
		}
		if err := c.store.Put(ctx, blk); err != nil {
			return err
		}
		if err := c.store.SetHead(ctx, storage.HeadSwarm, blk.Cid()); err != nil {
			return err
		}
		c.swarmID = blk.Cid().String()
		c.head = Head{Swarm: c.swarmID, Manifest: c.swarmID, Round: -1}
		c.st = round.Genesis(c.manifest, train.Snapshot(c.model))
		c.models = map[cid.Cid]int64{initCID: -1}
		return nil
	}
	if err != nil {
		return err
	}
	blk, err := c.store.Get(ctx, mc)
	if err != nil {
		return fmt.Errorf("swarm manifest %s: %w", mc, err)
	}
	if c.manifest, _, err = record.OpenBlock[record.SwarmManifest](blk); err != nil {
		return fmt.Errorf("data dir %s: %w", c.cfg.DataDir, err) // record.ErrOldFormat says what to do with it
	}
	if string(c.manifest.Config) != string(canon) {
		return fmt.Errorf("data dir %s holds swarm %s, started with a different config; use another --data-dir for a new swarm", c.cfg.DataDir, mc)
	}
	c.swarmID = mc.String()
	c.head = Head{Swarm: c.swarmID, Manifest: c.swarmID, Round: -1}
	initial, err := loadVector(ctx, c.ex, c.manifest.InitialModel, n)
	if err != nil {
		return err
	}
	c.st = round.Genesis(c.manifest, initial)
	c.models = map[cid.Cid]int64{c.manifest.InitialModel: -1}
	lc, err := c.store.Head(ctx, storage.HeadLedger)
	if errors.Is(err, storage.ErrNoHead) {
		return nil
	}
	if err != nil {
		return err
	}
	// Walk the ledger back to index the rounds, the payload history and
	// the counters.
	var last *record.RoundRecord
	// before is each peer's chain link before the last round, and
	// lastSeed that round's shard seed: what peer audits need of it.
	before, lastSeed := map[string]round.Link{}, c.manifest.Seed
	for at := &lc; at != nil; {
		rb, err := c.store.Get(ctx, *at)
		if err != nil {
			return fmt.Errorf("ledger record %s: %w", *at, err)
		}
		rec, _, err := record.OpenBlock[record.RoundRecord](rb)
		if err != nil {
			return err
		}
		if last == nil {
			last = rec
		} else if rec.Round == last.Round-1 {
			lastSeed = rec.Seed
		}
		c.byRound[rec.Round] = *at
		for _, e := range rec.Entries {
			c.st.History[e.Payload] = rec.Round // walking back: the earliest round wins
			_, inChain := c.st.Chain[e.Peer]
			_, inBefore := before[e.Peer]
			if c.p.Audits > 0 && (!inChain || (rec != last && !inBefore)) {
				// Walking back: a peer's latest contribution ends its chain.
				if cb, err := c.store.Get(ctx, e.Contribution); err == nil {
					if cr, _, err := record.OpenBlock[record.Contribution](cb); err == nil && cr.End != nil {
						link := round.Link{End: *cr.End, Payload: cr.Payload}
						if !inChain {
							c.st.Chain[e.Peer] = link
						}
						if rec != last && !inBefore {
							before[e.Peer] = link
						}
					}
				}
			}
		}
		c.metrics.restore(rec)
		c.history = append(c.history, restoredPoint(rec, *at))
		c.models[rec.Model] = rec.Round // walking back: the earliest round wins
		at = rec.Prev
	}
	slices.Reverse(c.history)
	c.models[c.manifest.InitialModel] = -1
	for _, s := range last.Scores {
		c.st.Scores[s.Peer] = s
		c.setScore(s)
	}
	if c.st.Params, err = loadVector(ctx, c.ex, last.Model, n); err != nil {
		return err
	}
	if last.OuterState != nil {
		if c.st.Outer, err = loadVector(ctx, c.ex, *last.OuterState, n); err != nil {
			return err
		}
	}
	c.st.Round, c.st.Seed, c.st.Base = last.Round+1, last.Seed, last.Model
	// The round before's base: what an overlapped round's contributions are
	// built on (round.Params.Built).
	c.st.Prev, c.st.PrevParams = last.Base, c.st.Params
	if c.p.Overlap && !last.Base.Equals(last.Model) {
		if c.st.PrevParams, err = loadVector(ctx, c.ex, last.Base, n); err != nil {
			return err
		}
	}
	if c.p.PeerAudits {
		// The verdicts of the next round judge the last one: rebuild what
		// the seal left of it, or they would go unsettled here and the
		// recheck (which replays from round 0) would disagree.
		base, err := loadVector(ctx, c.ex, last.Base, n)
		if err != nil {
			return fmt.Errorf("peer audits: the last round's base %s: %w", last.Base, err)
		}
		c.st.Last, err = round.LastOf(c.p, last, lastSeed, base, before,
			func(cc cid.Cid) (*record.Contribution, error) {
				b, err := c.store.Get(ctx, cc)
				if err != nil {
					return nil, err
				}
				r, _, err := record.OpenBlock[record.Contribution](b)
				return r, err
			},
			func(cc cid.Cid) ([]byte, error) {
				b, err := c.store.Get(ctx, cc)
				if err != nil {
					return nil, err
				}
				return b.RawData(), nil
			})
		if err != nil {
			return fmt.Errorf("peer audits: %w", err)
		}
	}
	c.head.Record, c.head.Round = lc.String(), last.Round
	c.emit(Resumed{Swarm: c.swarmID, After: last.Round})
	return nil
}

func (c *Coordinator) currentHead() Head {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.head
	h.Addrs = c.Addrs()
	return h
}

// faultPenalty is what one proven fault costs in gossipsub's
// application-specific score. Gossipsub acts on scores strictly below its
// thresholds (−100 gossip, −200 publish, −300 graylist; p2p.ScoreParams), so
// 110 makes one fault stop gossip to the peer, two stop flood-publishing to
// it, and three graylist it: its messages are no longer even read. Only
// proven faults count, so an honest peer that is slow, stale or unreachable
// never loses the mesh.
const faultPenalty = 110

// appScore feeds verification into gossipsub.
func (c *Coordinator) appScore(p peer.ID) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return -faultPenalty * float64(c.faults[p])
}

// setScore records a peer's standing from a record (c.mu held).
func (c *Coordinator) setScore(s record.PeerScore) {
	c.scores[s.Peer] = s
	id, err := peer.Decode(s.Peer)
	if err != nil {
		return
	}
	if k := verify.ProvenFaults(s); k > 0 {
		c.faults[id] = k
	} else {
		delete(c.faults, id)
	}
}

// collect gathers round r's contributions, in arrival order, until quorum
// peers have sent one or the deadline passes with at least
// min_contributions; without them it keeps waiting, a deadline at a time: a
// round never seals empty. It returns once every payload not carried inline
// has been fetched or has timed out, with why the round closed.
func (c *Coordinator) collect(r int64) ([]*received, string, error) {
	ctx := c.ctx
	var got []*received
	from := map[string]bool{}
	// Payloads not carried inline are fetched concurrently: a peer that
	// announces a payload nobody serves costs the round at most one fetch
	// timeout, however many such peers there are, and never blocks
	// collection.
	var fetches sync.WaitGroup
	defer fetches.Wait()
	// take handles one message; it reports whether the quorum is in.
	take := func(m *pubsub.Message) bool {
		ch, err := contributionOf(m)
		if err != nil || ch.rec.Round < r {
			return false // late for its round: ignore
		}
		rec, blk := ch.rec, ch.blk
		if rec.Round > r {
			c.early = append(c.early, m)
			return false
		}
		if from[rec.Peer] {
			return false // a re-announcement; a different one is the gate's equivocation
		}
		from[rec.Peer] = true
		_ = c.store.Put(ctx, blk)
		g := &received{rec: rec, block: blk}
		got = append(got, g)
		fetches.Go(func() { g.payload = c.fetchPayload(ctx, rec) })
		c.metrics.bytesIn.Add(float64(len(m.Data)))
		return len(got) >= c.sc.Round.Quorum
	}
	// settle reads what arrives within the grace period after the round
	// closed, then returns what was collected in the order tier 0 first
	// saw it (roundGate.seq), which is the record's order.
	settle := func(by string) ([]*received, string, error) {
		grace := time.NewTimer(closeGrace)
		defer grace.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil, "", ctx.Err()
			case <-grace.C:
			case m, ok := <-c.incoming:
				if ok {
					take(m)
					continue
				}
			}
			slices.SortStableFunc(got, func(a, b *received) int {
				return cmp.Compare(c.gate.arrival(r, a.rec.Peer), c.gate.arrival(r, b.rec.Peer))
			})
			return got, by, nil
		}
	}
	early := c.early
	c.early = nil
	for _, m := range early {
		if take(m) {
			return settle(SealedByQuorum)
		}
	}
	opened := time.Now()
	deadline := time.NewTimer(c.sc.Round.Deadline.D())
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-deadline.C:
			if len(got) >= c.sc.Round.MinContributions {
				return settle(SealedByDeadline)
			}
			c.emit(Waiting{Round: r, Have: len(got), Need: c.sc.Round.MinContributions, Waited: time.Since(opened)})
			deadline.Reset(c.sc.Round.Deadline.D())
		case m, ok := <-c.incoming:
			if !ok {
				return nil, "", errors.Join(ctx.Err(), errors.New("contributions subscription ended"))
			}
			if take(m) {
				return settle(SealedByQuorum)
			}
		}
	}
}

// closeGrace is how long a round stays open for stragglers after its
// quorum is in. An equivocator publishes its two versions back to back; the
// second is still in validation when the first completes the quorum, and
// without this wait its proof would miss the round's record. 200 ms is
// hundreds of validations and far below a round's length.
const closeGrace = 200 * time.Millisecond

// fetchPayload returns a contribution's payload, from the message or by CID
// from the swarm, and keeps it as a block so peers and observers can fetch
// and recheck it. nil means it could not be had within a deadline.
func (c *Coordinator) fetchPayload(ctx context.Context, rec *record.Contribution) []byte {
	if rec.Inline != nil {
		if pb, err := blocks.NewBlockWithCid(*rec.Inline, rec.Payload); err == nil {
			if pc, err := payloadCID(*rec.Inline); err == nil && pc.Equals(rec.Payload) {
				_ = c.store.Put(ctx, pb)
			}
		}
		return *rec.Inline
	}
	// A wait proportional to the payload's size, not the whole deadline:
	// a peer announcing a CID nobody serves costs the round little.
	maxBytes := verify.MaxPayloadBytes(c.gate.elems)
	fctx, cancel := context.WithTimeout(ctx, payloadFetchTimeout(c.sc.Round.Deadline.D(), rec.PayloadBytes, maxBytes))
	defer cancel()
	// The author holds it; any other connected peer that already has it
	// (one that fetched it first) races the author, so a payload from a
	// peer on a slow link comes from wherever it is fastest.
	pb, err := c.ex.GetFrom(fctx, rec.Payload, holders(rec.Peer), int64(maxBytes))
	if err != nil {
		c.log.Info("payload unavailable", "peer", rec.Peer, "payload", rec.Payload, "err", err)
		return nil
	}
	return pb.RawData()
}

// withFaults adds the gate's proven tier-0 faults of round r to what was
// collected — a faulty peer's collected contribution takes the fault as its
// verdict; a peer whose every message was rejected gets an entry for the
// first faulty one — stores the evidence blocks for rechecks, and returns
// the round engine's view of the round.
func (c *Coordinator) withFaults(r int64, got []*received) []round.Contribution {
	for _, f := range c.gate.takeFaults(r) {
		for _, raw := range f.blocks {
			if blk, err := recordBlock(raw); err == nil {
				_ = c.store.Put(c.ctx, blk)
			}
		}
		i := slices.IndexFunc(got, func(g *received) bool { return g.rec.Peer == f.peer })
		if i < 0 {
			rec, _, err := record.Open[record.Contribution](f.blocks[0])
			blk, berr := recordBlock(f.blocks[0])
			if err != nil || berr != nil {
				continue
			}
			got = append(got, &received{rec: rec, block: blk})
			i = len(got) - 1
		}
		got[i].fault, got[i].evidence = f.reason, f.evidence
	}
	in := make([]round.Contribution, len(got))
	for i, g := range got {
		in[i] = round.Contribution{Record: g.rec, Block: g.block.Cid(), Payload: g.payload, Fault: g.fault, Evidence: g.evidence}
	}
	return in
}

// seal runs the round engine over what was collected (judge and step),
// persists the outcome, then publishes it.
func (c *Coordinator) seal(got []*received) (RoundSummary, error) {
	start := time.Now()
	r := c.st.Round
	out, err := round.RunWith(c.ctx, c.p, c.st, c.withFaults(r, got), round.Checks{Tier2: c.tier2, Audit: c.audit, Referee: c.audit})
	if err != nil {
		return RoundSummary{}, err
	}
	if out.Held != "" {
		c.log.Warn("round keeps its base model", "round", r, "why", out.Held)
	}
	blk, err := c.persist(&out)
	if err != nil {
		return RoundSummary{}, err
	}
	c.st = out.Next
	c.publish(out, blk)
	for _, e := range out.Record.Entries {
		if next := c.p.DensityFor(c.st.Scores[e.Peer]); next != c.p.Density {
			// Its payloads could not be fetched in time: the ledger
			// assigns it a sparser density (round.Params.DensityFor).
			c.log.Info("peer assigned a density below the swarm's", "round", r, "peer", e.Peer, "next round", next, "swarm density", c.p.Density)
		}
		if e.Verdict == record.VerdictAccepted {
			c.metrics.accepted.Inc()
			continue
		}
		c.metrics.rejected.WithLabelValues(verify.Kind(e.Reason)).Inc()
		c.log.Info("contribution rejected", "round", r, "peer", e.Peer, "reason", e.Reason)
	}
	payloads := 0
	for _, g := range got {
		if g.payload != nil {
			payloads++
		}
	}
	return RoundSummary{Round: r, Record: blk.Cid().String(), Model: out.Record.Model.String(), Accepted: out.Accepted, Rejected: out.Rejected,
		MeanLoss: out.MeanLoss, BytesIn: out.BytesIn, Payloads: payloads, SealTime: time.Since(start)}, nil
}

// provideQueue bounds the checkpoints waiting to be announced: two a round,
// so a DHT much slower than the rounds drops announcements (peers still
// find the blocks by asking the peers they are connected to) instead of
// growing a backlog.
const provideQueue = 16

// provideLoop announces sealed checkpoints on the DHT, one at a time, off
// the seal: a DHT provide walks the network (several round trips, seconds
// on WAN links), and inside the seal it was most of it (635 ms of a seal at
// 16 peers with 50 ms links; benchmarks/scale).
func (c *Coordinator) provideLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case k := <-c.provides:
			if err := c.ex.Provide(c.ctx, k); err != nil {
				c.log.Debug("provide checkpoint", "cid", k, "err", err)
			}
		}
	}
}

// persist stores the round's model and outer state, signs the record and
// makes it the ledger's head. Durable first, then public: a crash after
// publishing never loses a sealed round.
func (c *Coordinator) persist(out *round.Outcome) (blocks.Block, error) {
	rec := &out.Record
	for _, f := range []struct {
		file []byte
		want cid.Cid
	}{{out.ModelFile, rec.Model}, {out.OuterFile, *rec.OuterState}} {
		got, err := c.ex.AddFile(c.ctx, f.file)
		if err != nil {
			return nil, err
		}
		if !got.Equals(f.want) {
			return nil, fmt.Errorf("stored checkpoint has CID %s, the round engine computed %s", got, f.want)
		}
		select {
		case c.provides <- got:
		default: // best effort: peers also find blocks by asking connected peers
		}
	}
	rec.Swarm, rec.Sealed = c.swarmID, time.Now().UnixMilli()
	if pc, ok := c.byRound[rec.Round-1]; ok {
		rec.Prev = &pc
	}
	blk, err := record.Sign(c.key, rec)
	if err != nil {
		return nil, err
	}
	if err := c.store.Put(c.ctx, blk); err != nil {
		return nil, err
	}
	if err := c.store.SetHead(c.ctx, storage.HeadLedger, blk.Cid()); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.byRound[rec.Round] = blk.Cid()
	if _, ok := c.models[rec.Model]; !ok { // a held round keeps its base model
		c.models[rec.Model] = rec.Round
	}
	c.head.Record, c.head.Round = blk.Cid().String(), rec.Round
	for _, s := range rec.Scores {
		c.setScore(s)
	}
	c.mu.Unlock()
	return blk, nil
}

// publish opens the next round and announces the record.
func (c *Coordinator) publish(out round.Outcome, blk blocks.Block) {
	// Open the next round before anyone can learn of this record, so no
	// early contribution to it is turned away.
	built, _ := c.p.Built(out.Next)
	c.gate.open(out.Next.Round, built, out.Next.Seed)
	if err := p2p.Publish(c.ctx, c.rounds, blk.RawData()); err != nil {
		c.log.Warn("publishing round record", "round", out.Record.Round, "err", err)
		return
	}
	c.metrics.bytesOut.Add(float64(len(blk.RawData())))
}

// timedTier2 records tier 2's cost per sampled contribution.
type timedTier2 struct {
	round.Tier2
	observe func(time.Duration, int)
}

func (t *timedTier2) Check(ctx context.Context, r round.Tier2Round) (map[string]record.Tier2, error) {
	start := time.Now()
	out, err := t.Tier2.Check(ctx, r)
	if err == nil && len(r.Sample) > 0 {
		t.observe(time.Since(start), len(r.Sample))
	}
	return out, err
}

// auditFetchTimeout bounds fetching what an audit needs (a committed state,
// a previous payload) from the audited peer: a peer that does not serve
// what it committed to fails its audit.
const auditFetchTimeout = 30 * time.Second

// fetchFile reads a file (a committed worker state) by CID from the swarm.
func (c *Coordinator) fetchFile(ctx context.Context, fc cid.Cid) ([]byte, error) {
	fctx, cancel := context.WithTimeout(ctx, auditFetchTimeout)
	defer cancel()
	return c.ex.File(fctx, fc)
}

func (c *Coordinator) fetchBlock(ctx context.Context, bc cid.Cid) (blocks.Block, error) {
	fctx, cancel := context.WithTimeout(ctx, auditFetchTimeout)
	defer cancel()
	return c.ex.Get(fctx, bc)
}
