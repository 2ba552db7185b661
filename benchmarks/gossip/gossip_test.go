// Package gossip measures how long a ~1 KB manifest takes to reach every
// peer of a swarm over gossipsub, in mocknet with 50 ms links:
//
//	go test -run '^$' -bench . -benchtime 10x ./benchmarks/gossip/
package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/swarmtrain/swarmtrain/node/p2p"
)

func BenchmarkManifestReachesAll(b *testing.B) {
	for _, n := range []int{16, 64} {
		b.Run(fmt.Sprintf("peers=%d/latency=50ms", n), func(b *testing.B) { benchPropagation(b, n, 50*time.Millisecond) })
	}
}

func benchPropagation(b *testing.B, n int, latency time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency})
	nodes := make([]*p2p.Node, n)
	for i := range nodes {
		h, err := mn.GenPeer()
		if err != nil {
			b.Fatal(err)
		}
		if nodes[i], err = p2p.New(ctx, h); err != nil {
			b.Fatal(err)
		}
		defer nodes[i].Close()
	}
	if err := mn.LinkAll(); err != nil {
		b.Fatal(err)
	}
	// A sparse random overlay: each peer dials 6 others, as discovery would give.
	r := rand.New(rand.NewPCG(1, 1))
	for i, nd := range nodes {
		for _, j := range r.Perm(n)[:6] {
			if j != i {
				if _, err := mn.ConnectPeers(nd.Host.ID(), nodes[j].Host.ID()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	name := p2p.TopicName("bench", "contributions")
	topics := make([]*pubsub.Topic, n)
	subs := make([]*pubsub.Subscription, n)
	for i, nd := range nodes {
		var err error
		if topics[i], err = nd.JoinTopic(name, nil); err != nil {
			b.Fatal(err)
		}
		if subs[i], err = topics[i].Subscribe(); err != nil {
			b.Fatal(err)
		}
	}
	// Let the meshes form (gossipsub heartbeats are 1 s).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, tp := range topics {
			ok = ok && len(tp.ListPeers()) >= 4
		}
		if ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := make([]byte, 1024)
	var times []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		msg[0], msg[1] = byte(it), byte(it>>8)
		src := it % n
		var wg sync.WaitGroup
		start := time.Now()
		for i, s := range subs {
			if i == src {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					m, err := s.Next(ctx)
					if err != nil || (m.Data[0] == msg[0] && m.Data[1] == msg[1]) {
						return
					}
				}
			}()
		}
		if err := p2p.Publish(ctx, topics[src], msg); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		times = append(times, time.Since(start))
		// drain the publisher's own copy
		rctx, c2 := context.WithTimeout(ctx, time.Second)
		subs[src].Next(rctx)
		c2()
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "ms-median-to-all")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "ms-max-to-all")
	b.ReportMetric(float64(latency.Milliseconds()), "ms-link-latency")
}
