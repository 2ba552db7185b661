package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
)

// ContributorConfig configures RunContributor.
type ContributorConfig struct {
	SwarmID   string
	Bootstrap []string
	DataDir   string
	Listen    []string
	Train     *data.Set // this machine's copy of the training set
	Device    train.Device
	Out       io.Writer
	Log       *slog.Logger
	// Applied is called after each round record is applied, with whether
	// the locally replayed model matched the record's model CID.
	Applied func(round int64, model cid.Cid, matched bool)

	// adversary, set only by tests in this package, makes the contributor
	// cheat; it is not a mode users can reach.
	adversary adversary
}

// adversary replaces what a contributor announces for a round. honest is
// the signed honest contribution, c and payload what it holds, delta the
// local update before compression. It returns the messages to publish.
type adversary interface {
	announce(ctx context.Context, k *contributor, c *record.Contribution, payload []byte, delta []float32) ([][]byte, error)
}

// contributorState is what a contributor mirrors of the swarm.
type contributorState struct {
	round int64 // the round being worked on
	seed  int64
	base  cid.Cid
}

// RunContributor joins a swarm and contributes to every round until the
// swarm's last round or ctx ends.
func RunContributor(ctx context.Context, cfg ContributorConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if len(cfg.Bootstrap) == 0 {
		return errors.New("--bootstrap: a contributor needs at least one peer of the swarm (the coordinator prints its address)")
	}
	ctx, cancel := context.WithCancel(ctx) // ends everything started here on return
	defer cancel()
	swarmCID, err := cid.Decode(cfg.SwarmID)
	if err != nil {
		return fmt.Errorf("swarm ID %q: %w", cfg.SwarmID, err)
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = config.Default().Network.Listen
	}
	b, err := openBase(ctx, cfg.DataDir, listen, config.Default().Network.MaxMessageBytes, cfg.Log, nil)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.net.Bootstrap(ctx, cfg.Bootstrap); err != nil {
		return err
	}
	// The manifest defines the swarm: fetch it by its CID, the swarm ID.
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	mblk, err := b.ex.Get(mctx, swarmCID)
	cancel()
	if err != nil {
		return fmt.Errorf("fetching swarm manifest %s from the bootstrap peers: %w", cfg.SwarmID, err)
	}
	manifest, _, err := record.OpenBlock[record.SwarmManifest](mblk)
	if err != nil {
		return err
	}
	sc, err := config.FromCanonical(manifest.Config)
	if err != nil {
		return err
	}
	coordinator, err := peer.Decode(manifest.Coordinator)
	if err != nil {
		return fmt.Errorf("swarm manifest: coordinator %q: %w", manifest.Coordinator, err)
	}
	spec := ModelSpec(sc)
	model, err := train.New(spec, sc.Train.BatchSize, sc.Seed, train.WithDevice(cfg.Device))
	if err != nil {
		return err
	}
	defer model.Close()
	n := model.NumParams()
	opt, err := train.NewOptimizer(OptimizerSpec(sc.Train.InnerOptimizer), n)
	if err != nil {
		return err
	}
	codec, err := gradient.NewCodec(sc.Compression.Codec, sc.Compression.Density)
	if err != nil {
		return err
	}
	outer, err := gradient.NewOuter(n, sc.Train.OuterOptimizer.LR, sc.Train.OuterOptimizer.Momentum)
	if err != nil {
		return err
	}
	ef := gradient.NewErrorFeedback(n, 0)

	k := &contributor{base: b, cfg: cfg, sc: sc, spec: spec, manifest: manifest, coordinator: coordinator, model: model, opt: opt, codec: codec, outer: outer, ef: ef,
		payloads: map[int64]map[cid.Cid][]byte{}}
	k.gate = newRoundGate(cfg.SwarmID, n)
	k.gate.onEquivocation = func(first, second []byte) {
		if err := reportEquivocation(ctx, b.net.Host, coordinator, first, second); err != nil {
			k.log.Debug("reporting an equivocation", "err", err)
		}
	}
	ctopic, err := b.net.JoinTopic(p2p.TopicName(cfg.SwarmID, topicContributions), k.validateContribution)
	if err != nil {
		return err
	}
	csub, err := ctopic.Subscribe()
	if err != nil {
		return err
	}
	defer csub.Cancel()
	rtopic, err := b.net.JoinTopic(p2p.TopicName(cfg.SwarmID, topicRounds), k.validateRecord)
	if err != nil {
		return err
	}
	rsub, err := rtopic.Subscribe()
	if err != nil {
		return err
	}
	defer rsub.Cancel()
	b.net.Discover(ctx, cfg.SwarmID, nil)
	serveHead(b.net.Host, func() Head { return Head{Swarm: cfg.SwarmID, Manifest: cfg.SwarmID, Round: -1} })
	go k.cachePayloads(ctx, csub)

	st, err := k.sync(ctx, coordinator)
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "joined swarm %s (%s) as %s at round %d\n", cfg.SwarmID, sc.Name, b.id, st.round)
	records := make(chan *record.RoundRecord, 16)
	go func() {
		defer close(records)
		for {
			m, err := rsub.Next(ctx)
			if err != nil {
				return
			}
			if rec, _, err := record.Open[record.RoundRecord](m.Data); err == nil {
				blk, _ := recordBlock(m.Data)
				_ = b.store.Put(ctx, blk)
				records <- rec
			}
		}
	}()
	for st.round < int64(sc.Train.Rounds) {
		k.gate.open(st.round, st.base, st.seed)
		if err := k.work(ctx, ctopic, st); err != nil {
			return err
		}
		// Wait for this round's record (or a later one, if we fell behind),
		// announcing the contribution again now and then: a coordinator
		// that restarted, or a mesh that re-formed, may have missed it.
		var rec *record.RoundRecord
		resend := time.NewTicker(republishInterval)
		for rec == nil || rec.Round < st.round {
			select {
			case <-ctx.Done():
				resend.Stop()
				return ctx.Err()
			case <-resend.C:
				k.net.Reconnect(ctx, cfg.Bootstrap)
				_ = p2p.Publish(ctx, ctopic, k.lastAnnounce)
			case r, ok := <-records:
				if !ok {
					resend.Stop()
					return ctx.Err()
				}
				rec = r
			}
		}
		resend.Stop()
		next, err := k.apply(ctx, rec)
		if err != nil {
			return err
		}
		st = next
	}
	fmt.Fprintf(cfg.Out, "swarm %s finished its %d rounds\n", cfg.SwarmID, sc.Train.Rounds)
	return nil
}

// republishInterval is how often a contributor re-announces its
// contribution while it waits for the round's record.
const republishInterval = 5 * time.Second

type contributor struct {
	*base
	lastAnnounce []byte
	cfg          ContributorConfig
	sc           *config.Swarm
	spec         train.ModelSpec
	manifest     *record.SwarmManifest
	coordinator  peer.ID
	model        train.Model
	opt          train.Optimizer
	codec        gradient.Codec
	outer        *gradient.Outer
	ef           *gradient.ErrorFeedback
	gate         *roundGate
	baseParams   []float32

	mu sync.Mutex
	// payloads seen on the contributions topic, by round: a fast peer's
	// contribution to the next round can arrive before this round's record.
	payloads map[int64]map[cid.Cid][]byte
}

// validateContribution is tier 0 (roundGate.validate); a test adversary's
// own messages skip it, so that it can send what tier 0 exists to stop.
func (k *contributor) validateContribution(ctx context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if k.cfg.adversary != nil && from == k.id {
		return pubsub.ValidationAccept
	}
	return k.gate.validate(ctx, from, m)
}

// validateRecord accepts round records signed by the swarm's coordinator only.
func (k *contributor) validateRecord(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	rec, signer, err := record.Open[record.RoundRecord](m.Data)
	if err != nil || signer != k.coordinator || rec.Swarm != k.cfg.SwarmID {
		return pubsub.ValidationReject
	}
	return pubsub.ValidationAccept
}

// cachePayloads keeps inline payloads of others' contributions, so applying
// a record rarely needs to fetch anything.
func (k *contributor) cachePayloads(ctx context.Context, sub *pubsub.Subscription) {
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if ch, err := contributionOf(m); err == nil && ch.rec.Inline != nil {
			k.keepPayload(ch.rec.Round, ch.rec.Payload, *ch.rec.Inline)
		}
	}
}

func (k *contributor) keepPayload(round int64, c cid.Cid, b []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.payloads[round] == nil {
		k.payloads[round] = map[cid.Cid][]byte{}
	}
	k.payloads[round][c] = b
}

// sync asks the coordinator for the head and loads the model, outer state
// and round to work on from it (late join included).
func (k *contributor) sync(ctx context.Context, coordinator peer.ID) (contributorState, error) {
	hd, err := askHead(ctx, k.net.Host, coordinator)
	if err != nil {
		return contributorState{}, err
	}
	n := k.model.NumParams()
	if hd.Record == "" {
		params, err := loadVector(ctx, k.ex, k.manifest.InitialModel, n)
		if err != nil {
			return contributorState{}, err
		}
		k.baseParams = params
		return contributorState{round: 0, seed: k.manifest.Seed, base: k.manifest.InitialModel}, nil
	}
	rc, err := cid.Decode(hd.Record)
	if err != nil {
		return contributorState{}, fmt.Errorf("head record %q: %w", hd.Record, err)
	}
	rb, err := k.ex.Get(ctx, rc)
	if err != nil {
		return contributorState{}, fmt.Errorf("fetching round record %s: %w", rc, err)
	}
	rec, signer, err := record.OpenBlock[record.RoundRecord](rb)
	if err != nil {
		return contributorState{}, err
	}
	if signer != coordinator {
		return contributorState{}, fmt.Errorf("round record %s is signed by %s, not the coordinator %s", rc, signer, coordinator)
	}
	if err := k.fetchState(ctx, rec); err != nil {
		return contributorState{}, err
	}
	return contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model}, nil
}

// fetchTimeout bounds fetching a model by CID: a 1 MB checkpoint takes
// milliseconds on a LAN; minutes mean no peer holds it.
const fetchTimeout = 2 * time.Minute

// fetchState loads a record's model and outer state by CID.
func (k *contributor) fetchState(ctx context.Context, rec *record.RoundRecord) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	n := k.model.NumParams()
	params, err := loadVector(ctx, k.ex, rec.Model, n)
	if err != nil {
		return err
	}
	k.baseParams = params
	if rec.OuterState != nil {
		st, err := loadVector(ctx, k.ex, *rec.OuterState, n)
		if err != nil {
			return err
		}
		k.outer.SetState(st)
	}
	return nil
}

// work runs the round's local steps and announces the contribution.
func (k *contributor) work(ctx context.Context, topic *pubsub.Topic, st contributorState) error {
	sc := k.sc
	shard := k.cfg.Train.Subset(data.Assign(uint64(st.seed), k.id.String(), k.cfg.Train.N, sc.Train.ShardSize))
	// Local work starts from the base minus what error feedback still owes
	// (see gradient.ErrorFeedback.CompressWhole).
	p := k.model.Params()
	copy(p, k.baseParams)
	for i, e := range k.ef.Residual() {
		p[i] -= e
	}
	stats, err := train.Local(ctx, k.model, k.opt, shard, sc.Train.InnerSteps, uint64(st.seed))
	if err != nil {
		return fmt.Errorf("round %d local work: %w", st.round, err)
	}
	delta := make([]float32, len(p))
	for i := range delta {
		delta[i] = k.baseParams[i] - p[i]
	}
	payload, err := k.ef.CompressWhole(k.codec, delta)
	if err != nil {
		return err
	}
	pc, err := payloadCID(payload)
	if err != nil {
		return err
	}
	pb, _ := blocks.NewBlockWithCid(payload, pc)
	if err := k.ex.Put(ctx, pb); err != nil {
		return err
	}
	c := &record.Contribution{Swarm: k.cfg.SwarmID, Round: st.round, Peer: k.id.String(), Base: st.base, Payload: pc, Codec: k.codec.Name(),
		PayloadBytes: int64(len(payload)), Samples: int64(stats.Samples), Loss: stats.MeanLoss, Created: time.Now().UnixMilli(), Seed: &st.seed}
	if len(payload) <= sc.Compression.InlineMaxBytes {
		c.Inline = &payload
	}
	blk, err := record.Sign(k.key, c)
	if err != nil {
		return err
	}
	k.keepPayload(st.round, pc, payload)
	fmt.Fprintf(k.cfg.Out, "round %3d  %d steps on %d samples  loss %.4f  sent %d bytes\n", st.round, stats.Steps, shard.N, stats.MeanLoss, len(blk.RawData()))
	msgs := [][]byte{blk.RawData()}
	if k.cfg.adversary != nil {
		if msgs, err = k.cfg.adversary.announce(ctx, k, c, payload, delta); err != nil || len(msgs) == 0 {
			return err
		}
	}
	k.lastAnnounce = msgs[0]
	for _, m := range msgs {
		if err := p2p.Publish(ctx, topic, m); err != nil {
			return err
		}
	}
	return nil
}

// apply replays a round record: the accepted payloads, aggregated with the
// swarm's rule, stepped with the mirrored outer optimizer. If the result
// does not hash to the record's model CID, or a payload is missing, it
// fetches the record's model and outer state instead.
func (k *contributor) apply(ctx context.Context, rec *record.RoundRecord) (contributorState, error) {
	next := contributorState{round: rec.Round + 1, seed: rec.Seed, base: rec.Model}
	n := k.model.NumParams()
	matched := false
	if rec.Base.Equals(k.gate.currentBase()) {
		var ups []gradient.Update
		complete := true
		for _, e := range rec.Entries {
			if e.Verdict != "accepted" {
				continue
			}
			k.mu.Lock()
			payload, ok := k.payloads[rec.Round][e.Payload]
			k.mu.Unlock()
			if !ok {
				fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				pb, err := k.ex.Get(fctx, e.Payload)
				cancel()
				if err != nil {
					complete = false
					break
				}
				payload = pb.RawData()
			}
			vec := make([]float32, n)
			if _, err := gradient.UnmarshalInto(vec, payload, gradient.Limits{MaxBytes: gradient.HeaderSize + 8*n}); err != nil {
				complete = false
				break
			}
			ups = append(ups, gradient.Update{ID: e.Peer, Vec: vec, Weight: e.Weight})
		}
		if complete {
			params := append([]float32(nil), k.baseParams...)
			saved := k.outer.State()
			if len(ups) > 0 {
				if res, err := gradient.Aggregate(k.sc.Verify.Aggregation, ups, k.sc.Verify.TrimFraction); err == nil {
					_ = k.outer.Step(params, res.Vec)
				}
			}
			file, err := checkpointFile(k.spec, params)
			if err == nil {
				if fc, err := storage.FileCID(file); err == nil && fc.Equals(rec.Model) {
					matched = true
					k.baseParams = params
				}
			}
			if !matched {
				k.outer.SetState(saved)
			}
		}
	}
	if !matched {
		k.log.Info("replayed model differs from the record or payloads are missing: fetching it", "round", rec.Round, "model", rec.Model)
		if err := k.fetchState(ctx, rec); err != nil {
			return next, err
		}
	}
	k.mu.Lock()
	for r := range k.payloads {
		if r <= rec.Round {
			delete(k.payloads, r)
		}
	}
	k.mu.Unlock()
	how := "replayed locally, CID matches the record"
	if !matched {
		how = "fetched by CID (replay differed or payloads were missing)"
	}
	fmt.Fprintf(k.cfg.Out, "applied round %d: model %s %s\n", rec.Round, rec.Model, how)
	if k.cfg.Applied != nil {
		k.cfg.Applied(rec.Round, rec.Model, matched)
	}
	return next, nil
}
