package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// ContributorConfig configures a Contributor.
type ContributorConfig struct {
	SwarmID   string
	Bootstrap []string
	DataDir   string
	Listen    []string
	// Relay is how the contributor crosses NATs (config.RelayModes); ""
	// is auto: AutoNAT decides whether to reserve a relay slot.
	Relay string
	// Announce replaces the addresses the contributor advertises.
	Announce []string
	Train    *data.Set // this machine's copy of the training set
	// LoadTrain, when Train is nil, loads it once the swarm manifest has
	// said which dataset the swarm trains on (and which hash it pins).
	LoadTrain func(*config.Swarm) (*data.Set, error)
	Device    train.Device
	Log       *slog.Logger
	// Event is told of what the contributor does: Joined, Worked, Applied,
	// Refused, Finished.
	Event func(Event)
}

// Contributor is a peer that trains on its shard every round and applies
// the sealed records. NewContributor opens it, Start runs it, Close stops
// it.
type Contributor struct {
	*base
	cfg ContributorConfig

	// Set by join.
	sc          *config.Swarm
	p           round.Params
	manifest    *record.SwarmManifest
	coordinator peer.ID
	model       train.Model
	worker      *round.Worker
	gate        *roundGate
	ctopic      *pubsub.Topic
	records     chan *record.RoundRecord
	faults      *faultScore

	// Owned by the run goroutine.
	st           contributorState
	lastAnnounce []byte
	// pending is the worker state before the last announced work, while
	// its record is awaited (verify.audits > 0): if the record does not
	// hold the contribution, the state chain did not move, and the worker
	// goes back to it.
	pending *pendingWork
	// chain is each peer's state-chain link as the applied records left
	// it, and peerLast the last round as a peer audit needs it
	// (verify.peer_audits): what round.PeerAudit recomputes next.
	chain    map[string]round.Link
	peerLast *round.LastRound

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	err       error
	closeOnce sync.Once

	mu sync.Mutex
	// payloads seen on the contributions topic, by round: a fast peer's
	// contribution to the next round can arrive before this round's record.
	payloads map[int64]map[cid.Cid][]byte
}

type pendingWork struct {
	round int64
	start []float32
}

// contributorState is what a contributor mirrors of the swarm.
type contributorState struct {
	round  int64 // the round being worked on
	seed   int64
	base   cid.Cid
	params []float32 // the base model
	outer  []float32 // the outer optimizer's state the base was stepped with
	// prev is the previous round's base (round 0: its own), what the
	// round's contributions are built on with overlapped rounds.
	prev cid.Cid
	// scores is the base's record's score table: this peer's row fixes
	// the density its work is encoded at (round.Params.DensityFor).
	scores []record.PeerScore
}

// localWork is one round's local work, done and not yet announced.
type localWork struct {
	round, seed int64
	builtOn     cid.Cid // the model it started from
	payload     []byte
	stats       train.Stats
	samples     int // the shard's size
	compute     time.Duration
	// start and end are the worker's private state before and after the
	// work: start to undo it (work that is never announced, or whose chain
	// the ledger did not extend), end to commit to (tier 3).
	start, end []float32
	err        error
	// verdict is this peer's signed peer audit of the round before, sent
	// with the work (verify.peer_audits).
	verdict *record.PeerVerdict
	// density is the top-k density it was encoded at (the ledger's).
	density float64
}

// NewContributor opens the contributor's data dir and host. Start joins the
// swarm.
func NewContributor(cfg ContributorConfig, opts ...Option) (*Contributor, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if len(cfg.Bootstrap) == 0 {
		return nil, errors.New("--bootstrap: a contributor needs at least one peer of the swarm (the coordinator prints its address)")
	}
	if _, err := cid.Decode(cfg.SwarmID); err != nil {
		return nil, fmt.Errorf("swarm ID %q: %w", cfg.SwarmID, err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = config.Default().Network.Listen
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Contributor{cfg: cfg, ctx: ctx, cancel: cancel, done: make(chan struct{}), payloads: map[int64]map[cid.Cid][]byte{},
		records: make(chan *record.RoundRecord, 16)}
	// The contributor's own fault score: peers it proved faults of at tier
	// 0 lose its gossip mesh as they lose the coordinator's.
	k.faults = newFaultScore()
	relay := cmp.Or(cfg.Relay, "auto")
	if err := config.CheckRelay("relay", relay); err != nil {
		cancel()
		return nil, err
	}
	for _, a := range cfg.Announce {
		if err := config.CheckAnnounce("announce", a); err != nil {
			cancel()
			return nil, err
		}
	}
	b, err := openBase(ctx, cfg.DataDir, listen, reach{relay: relay, announce: cfg.Announce, bootstrap: cfg.Bootstrap}, o, cfg.Log, p2p.WithMaxMessageSize(config.Default().Network.MaxMessageBytes), p2p.WithAppScore(k.faults.appScore))
	if err != nil {
		cancel()
		return nil, err
	}
	k.base = b
	return k, nil
}

// Start joins the swarm and contributes to every round in the background
// until the swarm's last round, a failure or Close.
func (k *Contributor) Start() {
	k.wg.Go(func() {
		defer close(k.done)
		k.err = k.run()
	})
}

// Done is closed when the contributor stops.
func (k *Contributor) Done() <-chan struct{} { return k.done }

// Err is why the contributor stopped, once Done is closed.
func (k *Contributor) Err() error { return k.err }

// Close cancels everything the contributor started, waits for its
// goroutines, then closes the model, the host and the store.
func (k *Contributor) Close() error {
	k.closeOnce.Do(func() {
		k.cancel()
		k.wg.Wait()
		if k.model != nil {
			k.model.Close()
		}
		k.base.close()
	})
	return nil
}

// RunContributor joins a swarm and contributes to every round until the
// swarm's last round, a failure or ctx ends.
func RunContributor(ctx context.Context, cfg ContributorConfig, opts ...Option) error {
	k, err := NewContributor(cfg, opts...)
	if err != nil {
		return err
	}
	defer k.Close()
	k.Start()
	select {
	case <-ctx.Done():
		k.Close()
		return ctx.Err()
	case <-k.Done():
		return k.Err()
	}
}

func (k *Contributor) emit(e Event) {
	if k.cfg.Event != nil {
		k.cfg.Event(e)
	}
}

// republishInterval is how often a contributor re-announces its
// contribution while it waits for the round's record.
const republishInterval = 5 * time.Second

// maxRepublishGap caps the back-off between re-announcements.
const maxRepublishGap = 40 * time.Second

func (k *Contributor) run() error {
	if err := k.join(); err != nil {
		return err
	}
	k.emit(Joined{Swarm: k.cfg.SwarmID, Name: k.sc.Name, Peer: k.id.String(), Round: k.st.round})
	rounds := int64(k.sc.Train.Rounds)
	// ready is, with overlapped rounds, the next round's work, done while
	// this one was sealed.
	var ready *localWork
	for k.st.round < rounds {
		r := k.st.round
		built := k.st.base
		if k.p.Overlap {
			built = k.st.prev // round.Params.Built
		}
		k.gate.open(r, built, k.st.seed)
		worked := false
		switch {
		case ready != nil && ready.round == r:
			worked = k.publish(ready)
		case k.st.params != nil && built.Equals(k.st.base):
			// Not overlapped, or round 0 of an overlapped swarm (built on
			// the initial model too): work now. A peer holding only the
			// round's base of an overlapped round (it just joined, or
			// fetched the model) skips to the next round's work below.
			// Peer audit first (config: never with overlapped rounds): the
			// replay uses the model as scratch, and the worker writes its
			// own parameters back before its work.
			verdict := k.peerAudit()
			w := k.compute(r, k.st.seed, k.st.base, k.st.params, k.st.scores)
			w.verdict = verdict
			worked = k.publish(w)
		}
		ready = nil
		// Overlapped rounds: the next round is built on the model this
		// peer holds and its shard seed is known (round.OverlapSeed), so
		// its work runs while this round is collected and sealed.
		var next chan *localWork
		if k.p.Overlap && k.st.params != nil && r+1 < rounds {
			next = make(chan *localWork, 1)
			st := k.st
			k.wg.Go(func() { next <- k.compute(r+1, round.OverlapSeed(st.seed, st.base), st.base, st.params, st.scores) })
		}
		// Wait for this round's record (or a later one, if we fell behind),
		// announcing the contribution again now and then: a coordinator
		// that restarted, or a mesh that re-formed, may have missed it.
		rec, err := k.awaitRecord(r, worked)
		if next != nil {
			ready = <-next // the worker is not shared: apply may reset its state
		}
		if err != nil {
			return err
		}
		if ready != nil && !k.stillValid(ready, rec) {
			if ready.start != nil {
				_ = k.worker.SetState(ready.start) // never announced: undone
			}
			ready = nil
		}
		k.apply(rec)
	}
	k.emit(Finished{Swarm: k.cfg.SwarmID, Rounds: int(rounds), Model: k.st.base})
	return nil
}

// join fetches the manifest from the bootstrap peers, builds the model and
// the worker the swarm's config asks for, joins the swarm's topics and
// loads the state to work from (late join included).
func (k *Contributor) join() error {
	ctx := k.ctx
	if err := k.net.Bootstrap(ctx, k.cfg.Bootstrap); err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	manifest, err := fetchManifest(mctx, k.base, k.cfg.SwarmID)
	cancel()
	if err != nil {
		return err
	}
	k.manifest = manifest
	if k.sc, err = config.FromCanonical(manifest.Config); err != nil {
		return err
	}
	if k.coordinator, err = peer.Decode(manifest.Coordinator); err != nil {
		return fmt.Errorf("swarm manifest: coordinator %q: %w", manifest.Coordinator, err)
	}
	k.net.Protect(k.coordinator, "swarmtrain:coordinator")
	// Gossip's message limit is fixed when gossip starts: follow the
	// swarm's, or its larger messages would never reach this peer.
	if limit := k.sc.Network.MaxMessageBytes; limit != config.Default().Network.MaxMessageBytes {
		if err := k.restartNet(ctx, p2p.WithMaxMessageSize(limit)); err != nil {
			return err
		}
		if err := k.net.Bootstrap(ctx, k.cfg.Bootstrap); err != nil {
			return err
		}
	}
	k.p = round.ParamsOf(k.sc)
	if k.cfg.Train == nil && k.cfg.LoadTrain != nil {
		if k.cfg.Train, err = k.cfg.LoadTrain(k.sc); err != nil {
			return err
		}
	}
	if k.cfg.Train == nil {
		return fmt.Errorf("no training set: the contributor needs this machine's copy of the swarm's dataset")
	}
	if k.model, err = train.New(k.p.Model, k.sc.Train.BatchSize, k.sc.Seed, train.WithDevice(k.cfg.Device)); err != nil {
		return err
	}
	if k.worker, err = round.NewWorker(k.p, k.model); err != nil {
		return err
	}
	k.gate = newRoundGate(k.cfg.SwarmID, k.model.NumParams())
	k.gate.score = k.faults
	k.gate.onEquivocation = func(first, second []byte) {
		if err := reportEquivocation(ctx, k.net.Host, k.coordinator, first, second); err != nil {
			k.log.Debug("reporting an equivocation", "err", err)
		}
	}
	if k.ctopic, err = k.net.JoinTopic(p2p.TopicName(k.cfg.SwarmID, topicContributions), k.gate.validate); err != nil {
		return err
	}
	csub, err := k.ctopic.Subscribe()
	if err != nil {
		return err
	}
	// Records signed and published by the coordinator, newer than the last
	// one applied (an old record replayed is ignored).
	rtopic, err := k.net.JoinTopic(p2p.TopicName(k.cfg.SwarmID, topicRounds), roundsValidator(k.cfg.SwarmID, k.coordinator, func() int64 { return k.gate.round.Load() - 1 }))
	if err != nil {
		return err
	}
	rsub, err := rtopic.Subscribe()
	if err != nil {
		return err
	}
	k.net.Discover(ctx, k.cfg.SwarmID, nil)
	serveHead(k.net.Host, func() Head { return Head{Swarm: k.cfg.SwarmID, Manifest: k.cfg.SwarmID, Round: -1} })
	k.wg.Go(func() {
		defer csub.Cancel()
		k.cachePayloads(csub)
	})
	k.wg.Go(func() {
		defer rsub.Cancel()
		k.readRecords(rsub)
	})
	st, err := syncState(ctx, k.base, k.coordinator, k.cfg.SwarmID, k.manifest, k.model.NumParams())
	if err != nil {
		return err
	}
	k.st = st
	return nil
}

// fetchManifest fetches a swarm's manifest by its CID, the swarm ID.
func fetchManifest(ctx context.Context, b *base, swarmID string) (*record.SwarmManifest, error) {
	swarmCID, err := cid.Decode(swarmID)
	if err != nil {
		return nil, fmt.Errorf("swarm ID %q: %w", swarmID, err)
	}
	mblk, err := b.ex.Get(ctx, swarmCID)
	if err != nil {
		return nil, fmt.Errorf("fetching swarm manifest %s from the bootstrap peers: %w", swarmID, err)
	}
	manifest, _, err := record.OpenBlock[record.SwarmManifest](mblk)
	return manifest, err
}

// readRecords stores every round record gossip delivers and hands it to
// the round loop.
func (k *Contributor) readRecords(sub *pubsub.Subscription) {
	for {
		m, err := sub.Next(k.ctx)
		if err != nil {
			return
		}
		rec, ok := m.ValidatorData.(*record.RoundRecord) // roundsValidator opened and checked it
		if !ok {
			continue
		}
		if blk, err := recordBlock(m.Data); err == nil {
			_ = k.store.Put(k.ctx, blk)
		}
		select {
		case k.records <- rec:
		case <-k.ctx.Done():
			return
		}
	}
}

// cachePayloads keeps inline payloads of others' contributions, so applying
// a record rarely needs to fetch anything.
func (k *Contributor) cachePayloads(sub *pubsub.Subscription) {
	for {
		m, err := sub.Next(k.ctx)
		if err != nil {
			return
		}
		if ch, err := contributionOf(m); err == nil && ch.rec.Inline != nil {
			k.keepPayload(ch.rec.Round, ch.rec.Payload, *ch.rec.Inline)
		}
	}
}

func (k *Contributor) keepPayload(round int64, c cid.Cid, b []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.payloads[round] == nil {
		k.payloads[round] = map[cid.Cid][]byte{}
	}
	k.payloads[round][c] = b
}

// syncState asks the coordinator for the head and loads the model, outer
// state and round to work on from it.
func syncState(ctx context.Context, b *base, coordinator peer.ID, swarm string, m *record.SwarmManifest, n int) (contributorState, error) {
	rec, err := headRecord(ctx, b, coordinator, swarm, -1)
	if err != nil {
		return contributorState{}, err
	}
	if rec == nil {
		params, err := loadVector(ctx, b.ex, m.InitialModel, n)
		if err != nil {
			return contributorState{}, err
		}
		return contributorState{round: 0, seed: m.Seed, base: m.InitialModel, params: params, outer: make([]float32, n), prev: m.InitialModel}, nil
	}
	return fetchState(ctx, b, rec, n)
}

// headRecord asks the coordinator for its latest record and fetches it by
// CID, checking that the coordinator signed it for swarm. nil, nil: no
// round after `after` is sealed yet.
func headRecord(ctx context.Context, b *base, coordinator peer.ID, swarm string, after int64) (*record.RoundRecord, error) {
	hd, err := askHead(ctx, b.net.Host, coordinator)
	if err != nil {
		return nil, err
	}
	if hd.Record == "" || hd.Round <= after {
		return nil, nil
	}
	rc, err := cid.Decode(hd.Record)
	if err != nil {
		return nil, fmt.Errorf("head record %q: %w", hd.Record, err)
	}
	ctx, cancel := context.WithTimeout(ctx, headTimeout)
	defer cancel()
	rb, err := b.ex.Get(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("fetching round record %s: %w", rc, err)
	}
	rec, signer, err := record.OpenBlock[record.RoundRecord](rb)
	switch {
	case err != nil:
		return nil, err
	case signer != coordinator:
		return nil, fmt.Errorf("round record %s is signed by %s, not the coordinator %s", rc, signer, coordinator)
	case rec.Swarm != swarm:
		return nil, fmt.Errorf("round record %s is swarm %s's", rc, rec.Swarm)
	case rec.Round <= after:
		return nil, nil
	}
	return rec, nil
}

// fetchTimeout bounds fetching a model by CID: a 1 MB checkpoint takes
// milliseconds on a LAN; minutes mean no peer holds it.
const fetchTimeout = 2 * time.Minute

// fetchState loads a record's model and outer state by CID, refusing one
// that holds a non-finite value.
func fetchState(ctx context.Context, b *base, rec *record.RoundRecord, n int) (contributorState, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	st := contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model, outer: make([]float32, n), prev: rec.Base, scores: rec.Scores}
	var err error
	if st.params, err = loadVector(ctx, b.ex, rec.Model, n); err != nil {
		return st, err
	}
	if rec.OuterState != nil {
		if st.outer, err = loadVector(ctx, b.ex, *rec.OuterState, n); err != nil {
			return st, err
		}
	}
	if !gradient.Finite(st.params) || !gradient.Finite(st.outer) {
		return st, fmt.Errorf("round %d's model %s holds a NaN or infinite value", rec.Round, rec.Model)
	}
	return st, nil
}

// compute runs round r's local steps on the model params (builtOn) with
// shard seed seed. It does not announce: publish does.
//
// scores is the score table of the record its base came from: this peer's
// row there fixes the density the ledger assigns it (lower after rounds
// its payload could not be fetched in time, the swarm's otherwise). An
// overlapped round's work guesses it from the record before, and is undone
// if the record it follows assigns another (stillValid).
func (k *Contributor) compute(r, seed int64, builtOn cid.Cid, params []float32, scores []record.PeerScore) *localWork {
	w := &localWork{round: r, seed: seed, builtOn: builtOn, density: k.p.DensityFor(round.ScoreOf(scores, k.id.String()))}
	if was := k.worker.Density(); w.density != was {
		if w.err = k.worker.SetDensity(w.density); w.err != nil {
			return w
		}
		k.log.Info("density assigned by the ledger", "round", r, "density", w.density, "was", was, "swarm density", k.p.Density)
	}
	shard := round.Shard(k.cfg.Train, seed, k.id.String(), k.sc.Train.ShardSize)
	w.samples = shard.N
	if k.p.Audits > 0 || k.p.Overlap {
		w.start = k.worker.State()
	}
	began := time.Now()
	w.payload, _, w.stats, w.err = k.worker.Work(k.ctx, params, shard, uint64(seed))
	w.compute = time.Since(began)
	if w.err != nil && w.start != nil {
		_ = k.worker.SetState(w.start) // nothing to announce: the chain stays
	}
	if w.err == nil && k.p.Audits > 0 {
		w.end = k.worker.State()
	}
	return w
}

// stillValid says whether the next round's work, done while rec's round
// was sealed, can still be announced once rec is applied: rec must be the
// round it followed and name the seed and base the work used (anything
// else would be a provable shard fault or a stale update), and with tier 3
// the ledger must have extended this peer's state chain to where the work
// started (the contribution that ended there is in rec), or the work would
// fail the chain check.
func (k *Contributor) stillValid(w *localWork, rec *record.RoundRecord) bool {
	if w.round != rec.Round+1 || w.seed != rec.Seed || !w.builtOn.Equals(rec.Base) {
		return false
	}
	if w.density != k.p.DensityFor(round.ScoreOf(rec.Scores, k.id.String())) {
		return false // tier 1 holds the round to the density rec assigns
	}
	if p := k.pending; k.p.Audits > 0 && p != nil && p.round <= rec.Round {
		return p.round == rec.Round && slices.ContainsFunc(rec.Entries, func(e record.Entry) bool { return e.Peer == k.id.String() })
	}
	return true
}

// publish announces a round's work. It reports whether it announced one: a
// failed step (a diverged loss, say) costs this round's contribution,
// never the peer.
func (k *Contributor) publish(w *localWork) bool {
	if w.err != nil {
		if k.ctx.Err() == nil {
			k.emit(Refused{Round: w.round, Reason: "local work: " + w.err.Error()})
		}
		return false
	}
	c := contribution(k.cfg.SwarmID, k.id, w, k.worker.Codec().Name(), k.sc.Compression.InlineMaxBytes)
	c.PeerAudit = w.verdict
	if k.p.Audits > 0 {
		// Tier 3: commit to the state the work started from and ended in,
		// stored as files this peer serves over bitswap to its auditor.
		var err error
		if c.Start, c.End, err = k.commitStates(w.start, w.end); err != nil {
			k.log.Warn("storing the committed worker state", "round", w.round, "err", err)
			_ = k.worker.SetState(w.start)
			return false
		}
		k.pending = &pendingWork{round: w.round, start: w.start}
	}
	blk, err := announce(k.ctx, k.base, k.ctopic, c, w.payload)
	if err != nil {
		if k.ctx.Err() == nil {
			k.log.Warn("announcing the contribution", "round", w.round, "err", err)
		}
		return false
	}
	k.keepPayload(w.round, blk.payload, w.payload)
	k.lastAnnounce = blk.raw
	k.emit(Worked{Round: w.round, Steps: w.stats.Steps, Samples: w.samples, Loss: w.stats.MeanLoss, Bytes: len(blk.raw), Compute: w.compute})
	return true
}

// contribution is the unsigned contribution record of a round's payload.
func contribution(swarm string, id peer.ID, w *localWork, codec string, inlineMax int) *record.Contribution {
	payload := w.payload
	pc, _ := payloadCID(payload)
	seed := w.seed
	c := &record.Contribution{Swarm: swarm, Round: w.round, Peer: id.String(), Base: w.builtOn, Payload: pc, Codec: codec,
		PayloadBytes: int64(len(payload)), Samples: int64(w.stats.Samples), Loss: w.stats.MeanLoss, Created: time.Now().UnixMilli(), Seed: &seed}
	if len(payload) <= inlineMax {
		c.Inline = &payload
	}
	return c
}

type announced struct {
	raw     []byte
	payload cid.Cid
}

// announce stores the payload as a block others can fetch, signs c and
// publishes it.
func announce(ctx context.Context, b *base, topic *pubsub.Topic, c *record.Contribution, payload []byte) (announced, error) {
	pb, err := blocks.NewBlockWithCid(payload, c.Payload)
	if err != nil {
		return announced{}, err
	}
	if err := b.ex.Put(ctx, pb); err != nil {
		return announced{}, err
	}
	blk, err := record.Sign(b.key, c)
	if err != nil {
		return announced{}, err
	}
	if err := p2p.Publish(ctx, topic, blk.RawData()); err != nil {
		return announced{}, err
	}
	return announced{raw: blk.RawData(), payload: c.Payload}, nil
}

// awaitRecord waits for round r's record (or a later one), re-announcing
// the contribution now and then.
func (k *Contributor) awaitRecord(r int64, announced bool) (*record.RoundRecord, error) {
	resend := time.NewTicker(republishInterval)
	defer resend.Stop()
	// Re-announcements back off (5, 10, 20 s ... up to maxRepublishGap):
	// every peer validates each one, so at a fixed interval a round that
	// stretches (a slow or crowded machine) drew more of them, which
	// stretched it further — a swarm's validation work grew with the
	// square of its size times the round's length (benchmarks/scale).
	gap, lastSent := republishInterval, time.Now()
	for {
		select {
		case <-k.ctx.Done():
			return nil, k.ctx.Err()
		case <-resend.C:
			k.net.Reconnect(k.ctx, k.cfg.Bootstrap)
			// Gossip may have lost the record (a mesh that re-formed, a
			// coordinator that published and stopped): ask for the head.
			if rec, _ := headRecord(k.ctx, k.base, k.coordinator, k.cfg.SwarmID, r-1); rec != nil {
				return rec, nil
			}
			if announced && time.Since(lastSent) >= gap-republishInterval/2 {
				_ = p2p.Publish(k.ctx, k.ctopic, k.lastAnnounce)
				lastSent, gap = time.Now(), min(2*gap, maxRepublishGap)
			}
		case rec := <-k.records:
			if rec.Round >= r {
				return rec, nil
			}
		}
	}
}

// apply moves to the state a sealed record defines: by replaying it
// (round.Replay over the accepted payloads, from the state this peer holds)
// when the record builds on that state, else, or when the replay does not
// hash to the record's model, by fetching the record's model and outer
// state. A model it cannot get, or one holding NaN or Inf, is refused: the
// peer keeps no base and waits for the next record.
func (k *Contributor) apply(rec *record.RoundRecord) {
	n := k.model.NumParams()
	if k.p.PeerAudits {
		k.peerLast = k.lastRound(rec)
	}
	if w := k.pending; w != nil && w.round <= rec.Round {
		k.pending = nil
		switch {
		case w.round < rec.Round:
			// Its record was missed: whether the chain moved is unknown,
			// so start over from the zero state, always a valid start.
			if l, err := k.p.StateLen(n); err == nil {
				_ = k.worker.SetState(make([]float32, l))
			}
		case !slices.ContainsFunc(rec.Entries, func(e record.Entry) bool { return e.Peer == k.id.String() }):
			// The contribution is not in the ledger: the chain still ends
			// where this work started.
			_ = k.worker.SetState(w.start)
		}
	}
	replayed := false
	if k.st.params != nil && rec.Base.Equals(k.st.base) {
		params, outer, err := round.Replay(k.p, k.st.params, k.st.outer, rec.Entries, func(c cid.Cid) ([]byte, error) { return k.payload(rec, c) })
		if err == nil && gradient.Finite(params) {
			if file, err := round.CheckpointFile(k.p.Model, params); err == nil {
				if fc, err := storage.FileCID(file); err == nil && fc.Equals(rec.Model) {
					replayed = true
					k.st = contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model, params: params, outer: outer, prev: rec.Base, scores: rec.Scores}
				}
			}
		}
	}
	if !replayed {
		k.log.Info("replayed model differs from the record or payloads are missing: fetching it", "round", rec.Round, "model", rec.Model)
		st, err := fetchState(k.ctx, k.base, rec, n)
		if err != nil {
			k.emit(Refused{Round: rec.Round, Reason: err.Error()})
			st.params = nil
		}
		k.st = st
	}
	k.mu.Lock()
	for r := range k.payloads {
		if r <= rec.Round {
			delete(k.payloads, r)
		}
	}
	k.mu.Unlock()
	if k.st.params != nil {
		k.emit(Applied{Round: rec.Round, Model: rec.Model, Replayed: replayed})
	}
}

// payload is an accepted payload of rec's round: cached from gossip, or
// fetched by CID from its author, the coordinator (which fetched every
// payload it judged) and other connected peers at once.
func (k *Contributor) payload(rec *record.RoundRecord, c cid.Cid) ([]byte, error) {
	k.mu.Lock()
	b, ok := k.payloads[rec.Round][c]
	k.mu.Unlock()
	if ok {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(k.ctx, 30*time.Second)
	defer cancel()
	from := []peer.ID{k.coordinator}
	if i := slices.IndexFunc(rec.Entries, func(e record.Entry) bool { return e.Payload.Equals(c) }); i >= 0 {
		from = append(from, holders(rec.Entries[i].Peer)...)
	}
	pb, err := k.ex.GetFrom(ctx, c, from, int64(verify.MaxPayloadBytes(k.gate.elems)))
	if err != nil {
		return nil, err
	}
	return pb.RawData(), nil
}

// commitStates stores a worker's start and end states as files (served
// over bitswap) and returns their CIDs.
func (k *Contributor) commitStates(start, end []float32) (*cid.Cid, *cid.Cid, error) {
	var out [2]*cid.Cid
	for i, v := range [][]float32{start, end} {
		f, err := round.StateFile(v)
		if err != nil {
			return nil, nil, err
		}
		c, err := k.ex.AddFile(k.ctx, f)
		if err != nil {
			return nil, nil, err
		}
		out[i] = &c
	}
	return out[0], out[1], nil
}

// lastRound is what a peer audit needs of rec's round (round.LastOf),
// from the state this peer held before applying it, and moves the state
// chain on. Nil when this peer cannot audit soundly: it lacks the round's
// base, or its view of the chain does not reach the contribution it is
// assigned (it missed a record), so that it never signs a verdict the
// referee would refute for want of the right inputs.
func (k *Contributor) lastRound(rec *record.RoundRecord) *round.LastRound {
	ctx, cancel := context.WithTimeout(k.ctx, fetchTimeout)
	defer cancel()
	opened := map[cid.Cid]*record.Contribution{}
	contribution := func(c cid.Cid) (*record.Contribution, error) {
		if r, ok := opened[c]; ok {
			return r, nil
		}
		from := []peer.ID{k.coordinator}
		if i := slices.IndexFunc(rec.Entries, func(e record.Entry) bool { return e.Contribution.Equals(c) }); i >= 0 {
			from = append(from, holders(rec.Entries[i].Peer)...)
		}
		b, err := k.ex.GetFrom(ctx, c, from, int64(k.sc.Network.MaxMessageBytes))
		if err != nil {
			return nil, err
		}
		r, _, err := record.OpenBlock[record.Contribution](b)
		if err != nil {
			return nil, err
		}
		opened[c] = r
		return r, nil
	}
	if k.chain == nil {
		k.chain = map[string]round.Link{}
	}
	before := maps.Clone(k.chain)
	// Every entry that committed to an end state moves its author's chain,
	// as in round.RunWith.
	for _, e := range rec.Entries {
		if r, err := contribution(e.Contribution); err == nil && r.End != nil {
			k.chain[e.Peer] = round.Link{End: *r.End, Payload: r.Payload}
		} else {
			delete(k.chain, e.Peer) // unknown now: no audit of it until it contributes again
		}
	}
	if k.st.params == nil || !rec.Base.Equals(k.st.base) {
		return nil
	}
	last, err := round.LastOf(k.p, rec, k.st.seed, k.st.params, before, contribution, func(c cid.Cid) ([]byte, error) { return k.payload(rec, c) })
	if err != nil {
		k.log.Info("peer audit: cannot rebuild the round", "round", rec.Round, "err", err)
		return nil
	}
	target, ok := last.Assigned[k.id.String()]
	if !ok {
		return nil
	}
	w := last.Work[target]
	zero, err := round.ZeroStateCID(k.p, len(k.st.params))
	if err != nil {
		return nil
	}
	if link, known := before[target]; !w.Start.Equals(zero) && (!known || !link.End.Equals(w.Start)) {
		k.log.Info("peer audit: this peer's view of the chain does not reach its assignment", "round", rec.Round, "peer", target)
		return nil
	}
	return last
}

// peerAudit recomputes the contribution this peer is assigned from the
// last round and returns the verdict to sign (nil: none). Inputs it cannot
// fetch mean no verdict rather than a fail: a fail is refereed, and the
// coordinator may well reach a peer this one could not.
func (k *Contributor) peerAudit() *record.PeerVerdict {
	last := k.peerLast
	k.peerLast = nil
	if last == nil {
		return nil
	}
	target := last.Assigned[k.id.String()]
	w := last.Work[target]
	ctx, cancel := context.WithTimeout(k.ctx, 2*auditFetchTimeout)
	defer cancel()
	from := append([]peer.ID{k.coordinator}, holders(target)...)
	file := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		fctx, cancel := context.WithTimeout(ctx, auditFetchTimeout)
		defer cancel()
		return k.ex.File(fctx, c)
	}
	block := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		b, err := k.ex.GetFrom(ctx, c, from, int64(verify.MaxPayloadBytes(k.gate.elems)))
		if err != nil {
			return nil, err
		}
		return b.RawData(), nil
	}
	for _, c := range []cid.Cid{w.Start, w.End} {
		if _, err := file(ctx, c); err != nil {
			k.log.Info("peer audit: a committed state is out of reach", "peer", target, "state", c, "err", err)
			return nil
		}
	}
	if w.Prev.Defined() {
		if _, err := block(ctx, w.Prev); err != nil {
			k.log.Info("peer audit: the previous payload is out of reach", "peer", target, "payload", w.Prev, "err", err)
			return nil
		}
	}
	d := &round.DataAuditor{P: k.p, Model: k.model, Train: k.cfg.Train, Audits: 1, File: file, Payload: block}
	v, err := round.PeerAudit(ctx, d, last, k.id.String())
	if err != nil {
		if k.ctx.Err() == nil {
			k.log.Warn("peer audit", "peer", target, "err", err)
		}
		return nil
	}
	return v
}
