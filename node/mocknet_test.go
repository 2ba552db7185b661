package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// testNet is an in-process network (mocknet) for a whole swarm: no
// sockets, every host linked to every other.
type testNet struct {
	mu sync.Mutex
	mn mocknet.Mocknet
	n  int
}

func newTestNet(t testing.TB) *testNet {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	return &testNet{mn: mn}
}

// host adds a host with key (a new one when nil) and links it to every
// other host.
func (n *testNet) host(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	n.n++
	h, err := n.mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", n.n)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return h
}

// quietLog discards a node's logs.
var quietLog = slog.New(slog.DiscardHandler)

// attacker is a cheating contributor, in test code only: it follows the
// protocol (fetches the manifest and every sealed model, trains on its
// shard) but publishes whatever its adversary makes of its honest
// contribution, as signed raw messages on the contributions topic, whose
// validator accepts everything.
type attacker struct {
	*base
	adv        adversary
	codec      gradient.Codec
	baseParams []float32
	// last is the record the attacker last applied and lastSeed that
	// round's shard seed: what a peer-audit assignment is drawn from.
	last     *record.RoundRecord
	lastSeed int64

	mu       sync.Mutex
	payloads map[int64]map[cid.Cid][]byte
}

// runAttacker runs an attacker on h until the swarm's last round or ctx
// ends (a graylisted attacker hears no more records and waits for ctx).
func runAttacker(ctx context.Context, h host.Host, dir, swarm, bootstrap string, trainSet *data.Set, adv adversary) error {
	b, err := openBase(ctx, dir, nil, reach{}, options{host: h}, quietLog)
	if err != nil {
		return err
	}
	defer b.close()
	a := &attacker{base: b, adv: adv, payloads: map[int64]map[cid.Cid][]byte{}}
	if err := b.net.Bootstrap(ctx, []string{bootstrap}); err != nil {
		return err
	}
	m, err := fetchManifest(ctx, b, swarm)
	if err != nil {
		return err
	}
	sc, err := config.FromCanonical(m.Config)
	if err != nil {
		return err
	}
	coordinator, err := peer.Decode(m.Coordinator)
	if err != nil {
		return err
	}
	p := round.ParamsOf(sc)
	model, err := train.New(p.Model, sc.Train.BatchSize, sc.Seed)
	if err != nil {
		return err
	}
	defer model.Close()
	worker, err := round.NewWorker(p, model)
	if err != nil {
		return err
	}
	a.codec = worker.Codec()
	// It validates nothing: it must read what honest peers send (a copier
	// copies it) and publish what tier 0 exists to stop.
	accept := func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
		return pubsub.ValidationAccept
	}
	ctopic, err := b.net.JoinTopic(p2p.TopicName(swarm, topicContributions), accept)
	if err != nil {
		return err
	}
	csub, err := ctopic.Subscribe()
	if err != nil {
		return err
	}
	defer csub.Cancel()
	rtopic, err := b.net.JoinTopic(p2p.TopicName(swarm, topicRounds), accept)
	if err != nil {
		return err
	}
	rsub, err := rtopic.Subscribe()
	if err != nil {
		return err
	}
	defer rsub.Cancel()
	b.net.Discover(ctx, swarm, nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		for {
			msg, err := csub.Next(ctx)
			if err != nil {
				return
			}
			if ch, err := contributionOf(msg); err == nil && ch.rec.Inline != nil {
				a.mu.Lock()
				if a.payloads[ch.rec.Round] == nil {
					a.payloads[ch.rec.Round] = map[cid.Cid][]byte{}
				}
				a.payloads[ch.rec.Round][ch.rec.Payload] = *ch.rec.Inline
				a.mu.Unlock()
			}
		}
	})
	n := model.NumParams()
	st, err := syncState(ctx, b, coordinator, swarm, m, n)
	if err != nil {
		return err
	}
	for st.round < int64(sc.Train.Rounds) {
		shard := round.Shard(trainSet, st.seed, b.id.String(), sc.Train.ShardSize)
		start := worker.State()
		payload, delta, stats, err := worker.Work(ctx, st.params, shard, uint64(st.seed))
		if err != nil {
			return err
		}
		a.baseParams = st.params
		c := contribution(swarm, b.id, &localWork{round: st.round, seed: st.seed, builtOn: st.base, payload: payload, stats: stats}, a.codec.Name(), sc.Compression.InlineMaxBytes)
		if p.Audits > 0 {
			// Commits to its state honestly, as a contributor does (served
			// over bitswap): its cheat is in what it announces.
			for _, s := range []struct {
				v  []float32
				to **cid.Cid
			}{{start, &c.Start}, {worker.State(), &c.End}} {
				f, err := round.StateFile(s.v)
				if err != nil {
					return err
				}
				fc, err := b.ex.AddFile(ctx, f)
				if err != nil {
					return err
				}
				*s.to = &fc
			}
		}
		msgs, err := adv.announce(ctx, a, c, payload, delta)
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if err := p2p.Publish(ctx, ctopic, msg); err != nil {
				return nil // the swarm ended
			}
		}
		var rec *record.RoundRecord
		for rec == nil || rec.Round < st.round {
			msg, err := rsub.Next(ctx)
			if err != nil {
				return nil // the swarm ended
			}
			if rec, _, err = record.Open[record.RoundRecord](msg.Data); err != nil {
				return err
			}
		}
		a.last, a.lastSeed = rec, st.seed
		if st, err = fetchState(ctx, b, rec, n); err != nil {
			return err
		}
	}
	return nil
}
