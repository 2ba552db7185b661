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
	// scores is the base's record's score table: this peer's row fixes
	// the density its work is encoded at (round.Params.DensityFor).
	scores []record.PeerScore
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
	for k.st.round < rounds {
		k.gate.open(k.st.round, k.st.base, k.st.seed)
		worked := k.work()
		// Wait for this round's record (or a later one, if we fell behind),
		// announcing the contribution again now and then: a coordinator
		// that restarted, or a mesh that re-formed, may have missed it.
		rec, err := k.awaitRecord(k.st.round, worked)
		if err != nil {
			return err
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
		return contributorState{round: 0, seed: m.Seed, base: m.InitialModel, params: params, outer: make([]float32, n)}, nil
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
	st := contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model, outer: make([]float32, n), scores: rec.Scores}
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

// work runs the round's local steps and announces the contribution. It
// reports whether it announced one: a failed step (a diverged loss, say)
// costs this round's contribution, never the peer.
func (k *Contributor) work() bool {
	st := k.st
	if st.params == nil {
		return false // no usable base: wait for the next record
	}
	// The density the ledger assigns this peer: lower after rounds its
	// payload could not be fetched in time, the swarm's otherwise.
	if d, was := k.p.DensityFor(round.ScoreOf(st.scores, k.id.String())), k.worker.Density(); d != was {
		if err := k.worker.SetDensity(d); err != nil {
			k.emit(Refused{Round: st.round, Reason: "local work: " + err.Error()})
			return false
		}
		k.log.Info("density assigned by the ledger", "round", st.round, "density", d, "was", was, "swarm density", k.p.Density)
	}
	shard := round.Shard(k.cfg.Train, st.seed, k.id.String(), k.sc.Train.ShardSize)
	var start []float32
	if k.p.Audits > 0 {
		start = k.worker.State()
	}
	began := time.Now()
	payload, _, stats, err := k.worker.Work(k.ctx, st.params, shard, uint64(st.seed))
	compute := time.Since(began)
	if err != nil {
		if k.ctx.Err() == nil {
			k.emit(Refused{Round: st.round, Reason: "local work: " + err.Error()})
		}
		if start != nil {
			_ = k.worker.SetState(start) // nothing announced: the chain stays
		}
		return false
	}
	c := contribution(k.cfg.SwarmID, k.id, st, k.worker.Codec().Name(), payload, stats, k.sc.Compression.InlineMaxBytes)
	if start != nil {
		// Tier 3: commit to the state the work started from and ended in,
		// stored as files this peer serves over bitswap to its auditor.
		if c.Start, c.End, err = k.commitStates(start, k.worker.State()); err != nil {
			k.log.Warn("storing the committed worker state", "round", st.round, "err", err)
			_ = k.worker.SetState(start)
			return false
		}
		k.pending = &pendingWork{round: st.round, start: start}
	}
	blk, err := announce(k.ctx, k.base, k.ctopic, c, payload)
	if err != nil {
		if k.ctx.Err() == nil {
			k.log.Warn("announcing the contribution", "round", st.round, "err", err)
		}
		return false
	}
	k.keepPayload(st.round, blk.payload, payload)
	k.lastAnnounce = blk.raw
	k.emit(Worked{Round: st.round, Steps: stats.Steps, Samples: shard.N, Loss: stats.MeanLoss, Bytes: len(blk.raw), Compute: compute})
	return true
}

// contribution is the unsigned contribution record of a round's payload.
func contribution(swarm string, id peer.ID, st contributorState, codec string, payload []byte, stats train.Stats, inlineMax int) *record.Contribution {
	pc, _ := payloadCID(payload)
	seed := st.seed
	c := &record.Contribution{Swarm: swarm, Round: st.round, Peer: id.String(), Base: st.base, Payload: pc, Codec: codec,
		PayloadBytes: int64(len(payload)), Samples: int64(stats.Samples), Loss: stats.MeanLoss, Created: time.Now().UnixMilli(), Seed: &seed}
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
					k.st = contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model, params: params, outer: outer, scores: rec.Scores}
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
