package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Heads the coordinator keeps durably in its store.
const (
	headSwarm  = "swarm"
	headLedger = "ledger"
)

// CoordinatorConfig configures RunCoordinator.
type CoordinatorConfig struct {
	Swarm   *config.Swarm
	DataDir string
	Test    *data.Set // held-out set for per-round accuracy and tier 2; nil skips both
	// Train is the training set contributors draw their shards from; tier
	// 2 evaluates sampled updates on their shards. nil skips tier 2.
	Train *data.Set
	Out   io.Writer // per-round progress lines
	Log   *slog.Logger
	// Ready is called once the swarm is up, with its ID, the addresses
	// contributors can bootstrap from and the HTTP API's address ("" if off).
	Ready func(swarmID string, addrs []string, api string)
	// RoundDone is called after each sealed round (tests and the API use it).
	RoundDone func(RoundSummary)
	// ExitWhenDone returns once the last round is sealed; otherwise the
	// coordinator keeps serving the head, blocks and API to observers until
	// ctx ends.
	ExitWhenDone bool
}

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
	SealTime     time.Duration `json:"seal_time_ns"`
}

// Coordinator is the node a researcher starts: it defines the swarm,
// checks and aggregates contributions, and seals the ledger.
type Coordinator struct {
	*base
	cfg      CoordinatorConfig
	sc       *config.Swarm
	spec     train.ModelSpec
	manifest *record.SwarmManifest
	swarmID  string
	gate     *roundGate
	rounds   *pubsub.Topic
	metrics  *metrics

	// early holds contributions for a round not yet open, in arrival order.
	early []*pubsub.Message

	// history maps every payload CID in the ledger to the round it first
	// appeared in: tier 1's replay check.
	history map[cid.Cid]int64
	scoring verify.ScoreParams

	mu      sync.Mutex
	head    Head
	byRound map[int64]cid.Cid
	scores  map[string]*record.PeerScore
}

// received is one contribution as collected, in arrival order.
type received struct {
	rec     *record.Contribution
	block   blocks.Block
	payload []byte // nil: could not be fetched
	// fault and evidence carry a proven tier-0 fault (from the gate).
	fault, evidence string
}

// RunCoordinator starts (or resumes, from cfg.DataDir) a swarm and runs its
// rounds until the config's round count or ctx ends.
func RunCoordinator(ctx context.Context, cfg CoordinatorConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	// Everything the coordinator starts (API server, discovery, gossip)
	// ends when it returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := cfg.Swarm
	c := &Coordinator{cfg: cfg, sc: sc, spec: ModelSpec(sc), byRound: map[int64]cid.Cid{}, scores: map[string]*record.PeerScore{}, metrics: newMetrics(),
		history: map[cid.Cid]int64{}, scoring: verify.DefaultScoreParams()}
	b, err := openBase(ctx, cfg.DataDir, sc.Network.Listen, sc.Network.MaxMessageBytes, cfg.Log, c.appScore)
	if err != nil {
		return err
	}
	c.base = b
	defer b.close()

	model, err := train.New(c.spec, sc.Train.BatchSize, sc.Seed)
	if err != nil {
		return err
	}
	defer model.Close()
	n := model.NumParams()
	outer, err := gradient.NewOuter(n, sc.Train.OuterOptimizer.LR, sc.Train.OuterOptimizer.Momentum)
	if err != nil {
		return fmt.Errorf("train.outer_optimizer: %w", err)
	}
	start, seed, baseCID, err := c.restore(ctx, model, outer)
	if err != nil {
		return err
	}
	c.gate = newRoundGate(c.swarmID, n)
	contribTopic, err := c.net.JoinTopic(p2p.TopicName(c.swarmID, topicContributions), c.gate.validate)
	if err != nil {
		return err
	}
	sub, err := contribTopic.Subscribe()
	if err != nil {
		return err
	}
	defer sub.Cancel()
	if c.rounds, err = c.net.JoinTopic(p2p.TopicName(c.swarmID, topicRounds), nil); err != nil {
		return err
	}
	serveHead(c.net.Host, c.currentHead)
	serveEvidence(c.net.Host, c.swarmID, func(rec *record.Contribution, a, b []byte) {
		if rec.Round >= c.gate.round.Load() {
			c.gate.mu.Lock()
			c.gate.fault(rec.Round, equivocationFault(rec, a, b))
			c.gate.mu.Unlock()
		}
	})
	c.net.Discover(ctx, c.swarmID, nil)
	if err := c.ex.Provide(ctx, c.manifestCID()); err != nil {
		c.log.Debug("provide manifest", "err", err)
	}
	api := ""
	if sc.API.Listen != "" {
		if api, err = c.serveAPI(ctx, sc.API.Listen); err != nil {
			return err
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(c.swarmID, c.Addrs(), api)
	}

	incoming := make(chan *pubsub.Message, 256)
	go func() {
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				close(incoming)
				return
			}
			select {
			case incoming <- m:
			case <-ctx.Done():
			}
		}
	}()

	for r := start; r < int64(sc.Train.Rounds); r++ {
		c.gate.open(r, baseCID, seed)
		got, err := c.collect(ctx, r, incoming)
		if err != nil {
			return err
		}
		sealStart := time.Now()
		sum, next, err := c.seal(ctx, r, seed, baseCID, model, outer, got)
		if err != nil {
			return fmt.Errorf("sealing round %d: %w", r, err)
		}
		sum.SealTime = time.Since(sealStart)
		if cfg.Test != nil {
			sum.TestLoss, sum.TestAccuracy, _ = model.Evaluate(cfg.Test)
		}
		c.metrics.roundSealed(sum)
		fmt.Fprintf(cfg.Out, "round %3d  accepted %d  rejected %d  train loss %.4f  test accuracy %.2f%%  bytes in %d  seal %s\n",
			r, sum.Accepted, sum.Rejected, sum.MeanLoss, 100*sum.TestAccuracy, sum.BytesIn, sum.SealTime.Round(time.Millisecond))
		if cfg.RoundDone != nil {
			cfg.RoundDone(sum)
		}
		seed, baseCID = next.seed, next.model
	}
	fmt.Fprintf(cfg.Out, "swarm %s: all %d rounds sealed\n", c.swarmID, sc.Train.Rounds)
	if !cfg.ExitWhenDone {
		fmt.Fprintln(cfg.Out, "serving the ledger, blocks and API until interrupted (Ctrl-C)")
		<-ctx.Done()
	}
	return nil
}

func (c *Coordinator) manifestCID() cid.Cid {
	mc, _ := cid.Decode(c.swarmID)
	return mc
}

// restore loads the swarm from the data dir, or creates it. It returns the
// next round to run, its seed and its base model CID, with model and outer
// set to that base.
func (c *Coordinator) restore(ctx context.Context, model train.Model, outer *gradient.Outer) (int64, int64, cid.Cid, error) {
	sc := c.sc
	canon, err := sc.Canonical()
	if err != nil {
		return 0, 0, cid.Undef, err
	}
	mc, err := c.store.Head(ctx, headSwarm)
	if errors.Is(err, storage.ErrNoHead) {
		file, err := checkpointFile(c.spec, model.Params())
		if err != nil {
			return 0, 0, cid.Undef, err
		}
		initCID, err := putFile(ctx, c.ex, file)
		if err != nil {
			return 0, 0, cid.Undef, err
		}
		c.manifest = &record.SwarmManifest{Name: sc.Name, Config: canon, Coordinator: c.id.String(), Created: time.Now().UnixMilli(), InitialModel: initCID, Seed: int64(sc.Seed)}
		blk, err := record.Sign(c.key, c.manifest)
		if err != nil {
			return 0, 0, cid.Undef, err
		}
		if err := c.store.Put(ctx, blk); err != nil {
			return 0, 0, cid.Undef, err
		}
		if err := c.store.SetHead(ctx, headSwarm, blk.Cid()); err != nil {
			return 0, 0, cid.Undef, err
		}
		c.swarmID = blk.Cid().String()
		c.head = Head{Swarm: c.swarmID, Manifest: c.swarmID, Round: -1}
		return 0, int64(sc.Seed), initCID, nil
	}
	if err != nil {
		return 0, 0, cid.Undef, err
	}
	blk, err := c.store.Get(ctx, mc)
	if err != nil {
		return 0, 0, cid.Undef, fmt.Errorf("swarm manifest %s: %w", mc, err)
	}
	if c.manifest, _, err = record.OpenBlock[record.SwarmManifest](blk); err != nil {
		return 0, 0, cid.Undef, err
	}
	if string(c.manifest.Config) != string(canon) {
		return 0, 0, cid.Undef, fmt.Errorf("data dir %s holds swarm %s, started with a different config; use another --data-dir for a new swarm", c.cfg.DataDir, mc)
	}
	c.swarmID = mc.String()
	c.head = Head{Swarm: c.swarmID, Manifest: c.swarmID, Round: -1}
	lc, err := c.store.Head(ctx, headLedger)
	if errors.Is(err, storage.ErrNoHead) {
		return 0, c.manifest.Seed, c.manifest.InitialModel, nil
	}
	if err != nil {
		return 0, 0, cid.Undef, err
	}
	// Walk the ledger back to index the rounds and restore the scores.
	var last *record.RoundRecord
	for at := &lc; at != nil; {
		rb, err := c.store.Get(ctx, *at)
		if err != nil {
			return 0, 0, cid.Undef, fmt.Errorf("ledger record %s: %w", *at, err)
		}
		rec, _, err := record.OpenBlock[record.RoundRecord](rb)
		if err != nil {
			return 0, 0, cid.Undef, err
		}
		if last == nil {
			last = rec
		}
		c.byRound[rec.Round] = *at
		for _, e := range rec.Entries {
			c.history[e.Payload] = rec.Round // walking back: the earliest round wins
		}
		at = rec.Prev
	}
	for _, s := range last.Scores {
		c.scores[s.Peer] = &s
	}
	params, err := loadVector(ctx, c.ex, last.Model, model.NumParams())
	if err != nil {
		return 0, 0, cid.Undef, err
	}
	model.SetParams(params)
	if last.OuterState != nil {
		st, err := loadVector(ctx, c.ex, *last.OuterState, model.NumParams())
		if err != nil {
			return 0, 0, cid.Undef, err
		}
		outer.SetState(st)
	}
	c.head.Record, c.head.Round = lc.String(), last.Round
	fmt.Fprintf(c.cfg.Out, "resuming swarm %s after round %d\n", c.swarmID, last.Round)
	return last.Round + 1, last.Seed, last.Model, nil
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
	if s, ok := c.scores[p.String()]; ok {
		return -faultPenalty * float64(verify.ProvenFaults(*s))
	}
	return 0
}

// collect gathers round r's contributions, in arrival order, until quorum
// peers have sent one or the deadline passes with at least
// min_contributions; without them it keeps waiting, a deadline at a time: a
// round never seals empty. It returns once every payload not carried inline
// has been fetched or has timed out.
func (c *Coordinator) collect(ctx context.Context, r int64, incoming <-chan *pubsub.Message) ([]*received, error) {
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
		fetches.Add(1)
		go func() {
			defer fetches.Done()
			g.payload = c.fetchPayload(ctx, rec)
		}()
		c.metrics.bytesIn.Add(float64(len(m.Data)))
		return len(got) >= c.sc.Round.Quorum
	}
	// settle reads what arrives within the grace period after the round
	// closed, then returns what was collected in the order tier 0 first
	// saw it (roundGate.seq), which is the record's order.
	settle := func() ([]*received, error) {
		grace := time.NewTimer(closeGrace)
		defer grace.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-grace.C:
			case m, ok := <-incoming:
				if ok {
					take(m)
					continue
				}
			}
			slices.SortStableFunc(got, func(a, b *received) int {
				return cmp.Compare(c.gate.arrival(r, a.rec.Peer), c.gate.arrival(r, b.rec.Peer))
			})
			return got, nil
		}
	}
	early := c.early
	c.early = nil
	for _, m := range early {
		if take(m) {
			return settle()
		}
	}
	deadline := time.NewTimer(c.sc.Round.Deadline.D())
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			if len(got) >= c.sc.Round.MinContributions {
				return settle()
			}
			c.log.Info("round deadline passed without enough contributions; waiting", "round", r, "have", len(got))
			deadline.Reset(c.sc.Round.Deadline.D())
		case m, ok := <-incoming:
			if !ok {
				return nil, errors.New("contributions subscription ended")
			}
			if take(m) {
				return settle()
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
	fctx, cancel := context.WithTimeout(ctx, c.sc.Round.Deadline.D())
	defer cancel()
	pb, err := c.ex.Get(fctx, rec.Payload)
	if err != nil {
		c.log.Info("payload unavailable", "peer", rec.Peer, "payload", rec.Payload, "err", err)
		return nil
	}
	return pb.RawData()
}

// withFaults adds the gate's proven tier-0 faults of round r to what was
// collected: a faulty peer's collected contribution takes the fault as its
// verdict; a peer whose every message was rejected gets an entry for the
// first faulty one. The evidence blocks are stored for rechecks.
func (c *Coordinator) withFaults(ctx context.Context, r int64, got []*received) []*received {
	for _, f := range c.gate.takeFaults(r) {
		for _, raw := range f.blocks {
			if blk, err := recordBlock(raw); err == nil {
				_ = c.store.Put(ctx, blk)
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
	return got
}

type nextRound struct {
	seed  int64
	model cid.Cid
}

// seal checks the round's contributions (tier 1 over all, tier 2 over a
// sample), aggregates the accepted ones into the model, scores every
// contributor and writes, signs, stores and publishes the round record.
func (c *Coordinator) seal(ctx context.Context, r, seed int64, baseCID cid.Cid, model train.Model, outer *gradient.Outer, got []*received) (RoundSummary, nextRound, error) {
	got = c.withFaults(ctx, r, got)
	cands := make([]verify.Candidate, len(got))
	contribs := make([]cid.Cid, len(got))
	for i, g := range got {
		cands[i] = verify.Candidate{Contribution: g.rec, Payload: g.payload, Fault: g.fault, Evidence: g.evidence}
		contribs[i] = g.block.Cid()
	}
	n := model.NumParams()
	verdicts, err := verify.CheckRound(verify.DefaultTier1Params(), verify.RoundContext{Round: r, Base: baseCID, Seed: seed, Elems: n, History: c.history}, cands)
	if err != nil {
		return RoundSummary{}, nextRound{}, err
	}
	tier2, sampleSeed, sampleSize, err := c.tier2(seed, model, got, verdicts, contribs)
	if err != nil {
		return RoundSummary{}, nextRound{}, err
	}
	for i, g := range got {
		if t, ok := tier2[g.rec.Peer]; ok {
			verdicts[i].Reason = verify.Tier2Reason(t) // keeps Norm: the recheck re-derives it
		}
	}
	var ups []gradient.Update
	sum := RoundSummary{Round: r}
	var lossSum float64
	for i, g := range got {
		sum.BytesIn += len(g.payload)
		if !verdicts[i].Accepted() {
			sum.Rejected++
			continue
		}
		sum.Accepted++
		lossSum += g.rec.Loss
		ups = append(ups, gradient.Update{ID: g.rec.Peer, Vec: verdicts[i].Vec, Weight: float64(g.rec.Samples)})
	}
	if len(ups) > 0 {
		sum.MeanLoss = lossSum / float64(len(ups))
		res, err := gradient.Aggregate(c.sc.Verify.Aggregation, ups, c.sc.Verify.TrimFraction)
		if err != nil {
			return sum, nextRound{}, err
		}
		if err := outer.Step(model.Params(), res.Vec); err != nil {
			return sum, nextRound{}, err
		}
	}
	file, err := checkpointFile(c.spec, model.Params())
	if err != nil {
		return sum, nextRound{}, err
	}
	modelCID, err := putFile(ctx, c.ex, file)
	if err != nil {
		return sum, nextRound{}, err
	}
	sf, err := vectorFile("outer.momentum", outer.State())
	if err != nil {
		return sum, nextRound{}, err
	}
	stateCID, err := putFile(ctx, c.ex, sf)
	if err != nil {
		return sum, nextRound{}, err
	}
	c.mu.Lock()
	entries := make([]record.Entry, len(got))
	for i, g := range got {
		v := verdicts[i]
		p := g.rec.Peer
		e := record.Entry{Peer: p, Contribution: g.block.Cid(), Payload: g.rec.Payload, Verdict: "accepted", Reason: v.Reason, Evidence: v.Evidence,
			Weight: float64(g.rec.Samples), Norm: v.Norm, Loss: g.rec.Loss, Samples: g.rec.Samples}
		if !v.Accepted() {
			e.Verdict = "rejected"
			c.metrics.rejected.WithLabelValues(verify.Kind(v.Reason)).Inc()
			c.log.Info("contribution rejected", "round", r, "peer", p, "reason", v.Reason)
		} else {
			c.metrics.accepted.Inc()
		}
		if t, ok := tier2[p]; ok {
			e.Tier2 = &t
		}
		ps := c.scores[p]
		if ps == nil {
			ps = &record.PeerScore{Peer: p}
			c.scores[p] = ps
		}
		c.scoring.Apply(ps, r, e)
		e.Score = ps.Score
		entries[i] = e
		if _, seen := c.history[e.Payload]; !seen {
			c.history[e.Payload] = r
		}
	}
	var scores []record.PeerScore
	for _, p := range slices.Sorted(mapsKeys(c.scores)) {
		scores = append(scores, *c.scores[p])
	}
	var prev *cid.Cid
	if pc, ok := c.byRound[r-1]; ok {
		prev = &pc
	}
	c.mu.Unlock()
	// The next round's seed depends on the sealed model, so nobody can know
	// their next shard before this round is sealed.
	nextSeed := int64(data.PeerSeed(uint64(seed), modelCID.String()) >> 1)
	rec := &record.RoundRecord{Swarm: c.swarmID, Round: r, Prev: prev, Seed: nextSeed, Base: baseCID, Model: modelCID, OuterState: &stateCID,
		Entries: entries, Scores: scores, Sealed: time.Now().UnixMilli(), SampleSeed: sampleSeed, SampleSize: sampleSize}
	blk, err := record.Sign(c.key, rec)
	if err != nil {
		return sum, nextRound{}, err
	}
	// Durable first, then public: a crash after publishing never loses a
	// sealed round.
	if err := c.store.Put(ctx, blk); err != nil {
		return sum, nextRound{}, err
	}
	if err := c.store.SetHead(ctx, headLedger, blk.Cid()); err != nil {
		return sum, nextRound{}, err
	}
	c.mu.Lock()
	c.byRound[r] = blk.Cid()
	c.head.Record, c.head.Round = blk.Cid().String(), r
	c.mu.Unlock()
	// Open the next round before anyone can learn of this record, so no
	// early contribution to it is turned away.
	c.gate.open(r+1, modelCID, nextSeed)
	if err := p2p.Publish(ctx, c.rounds, blk.RawData()); err != nil {
		c.log.Warn("publishing round record", "round", r, "err", err)
	}
	sum.Record, sum.Model = blk.Cid().String(), modelCID.String()
	return sum, nextRound{seed: nextSeed, model: modelCID}, nil
}

// tier2 draws the round's tier-2 sample from the accepted contributions,
// with a seed fixed by every contribution received (verify.SampleSeed), and
// evaluates each sampled update on its contributor's shard, a random shard
// and held-out data. It needs the training and test sets; without them, or
// with verify.tier2_sample 0, it checks nothing and records no sample.
func (c *Coordinator) tier2(seed int64, model train.Model, got []*received, verdicts []verify.Verdict, contribs []cid.Cid) (map[string]record.Tier2, *int64, *int64, error) {
	k := c.sc.Verify.Tier2Sample
	if k == 0 || c.cfg.Train == nil || c.cfg.Test == nil {
		return nil, nil, nil, nil
	}
	var accepted []string
	vec := map[string][]float32{}
	for i, g := range got {
		if verdicts[i].Accepted() {
			accepted = append(accepted, g.rec.Peer)
			vec[g.rec.Peer] = verdicts[i].Vec
		}
	}
	sampleSeed, size := verify.SampleSeed(seed, contribs), int64(k)
	out := map[string]record.Tier2{}
	sample := verify.Sample(sampleSeed, accepted, k)
	if len(sample) == 0 {
		return out, &sampleSeed, &size, nil
	}
	start := time.Now()
	shard := c.sc.Train.ShardSize
	random, held := verify.Tier2Sets(sampleSeed, c.cfg.Train, c.cfg.Test, shard)
	checker, err := verify.NewTier2Checker(model, model.Params(), random, held)
	if err != nil {
		return nil, nil, nil, err
	}
	var ups []gradient.Update
	for i, g := range got {
		if verdicts[i].Accepted() {
			ups = append(ups, gradient.Update{ID: g.rec.Peer, Vec: verdicts[i].Vec, Weight: float64(g.rec.Samples)})
		}
	}
	agg, err := gradient.Aggregate(c.sc.Verify.Aggregation, ups, c.sc.Verify.TrimFraction)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checker.SetReference(agg.Vec); err != nil {
		return nil, nil, nil, err
	}
	for _, p := range sample {
		own := verify.OwnShard(c.cfg.Train, seed, p, shard)
		t, err := checker.Check(own, vec[p])
		if err != nil {
			return nil, nil, nil, err
		}
		out[p] = t
	}
	c.metrics.tier2Seconds.Observe(time.Since(start).Seconds() / float64(len(sample)))
	return out, &sampleSeed, &size, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.SortFunc(s, cmp.Compare[float64])
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
