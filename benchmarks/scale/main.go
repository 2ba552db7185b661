// Command scale runs whole swarms — one coordinator and N contributors —
// in one process on a mocknet with a tiny model, so that the two cores are
// not the limit, and prints per peer count: round time, the seal's time
// and share of it, how long a sealed record takes to be applied at every
// contributor, the gap between the last contribution and the seal,
// memory per peer and CPU per round. With -latency and -bandwidth the
// links are WAN-like, and -late adds a contributor that joins after round
// 2 (its join time is the checkpoint fetch). -overlap runs overlapped
// rounds (round.overlap, outer momentum 0.8) and -steps sets the inner
// steps, to measure contributor utilisation (local work over round time)
// where a round's wait is the network rather than the two cores.
//
//	go run ./benchmarks/scale -peers 8,16,32,64 -latency 50ms
//	go run ./benchmarks/scale -peers 16 -latency 50ms -bandwidth 100 -late
//	go run ./benchmarks/scale -peers 16 -latency 150ms -bandwidth 20 -late
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/train/data"
)

func main() {
	peersFlag := flag.String("peers", "8,16,32,64", "contributor counts, comma separated")
	rounds := flag.Int("rounds", 8, "rounds per swarm (the first two are left out of the figures: joining)")
	latency := flag.Duration("latency", 50*time.Millisecond, "one-way link latency")
	bandwidth := flag.Float64("bandwidth", 0, "link bandwidth in Mbit/s (0: unlimited)")
	hidden := flag.Int("hidden", 16, "MLP hidden width (784-H-10)")
	density := flag.Float64("density", 0.05, "top-k density: above compression.inline_max_bytes (64 KiB) a payload goes by CID over bitswap")
	late := flag.Bool("late", false, "add a contributor that joins after round 2, and time its join")
	overlap := flag.Bool("overlap", false, "overlapped rounds (round.overlap, outer momentum 0.8): contributors work the next round while the last is sealed")
	steps := flag.Int("steps", 5, "inner steps per round (train.inner_steps)")
	deadline := flag.Duration("deadline", 60*time.Second, "round.deadline: a round seals at the quorum (every peer) or at this with at least one contribution")
	timeout := flag.Duration("timeout", 15*time.Minute, "how long one swarm may run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of each swarm's measured rounds (2 on) to `FILE`.<peers>; samples carry the label role=coordinator or role=contributor")
	flag.Parse()
	stopProfileOnSignal()
	// Closing 65 nodes makes bitswap log every request it can no longer
	// answer; the figures are what this prints.
	logging.SetAllLoggers(logging.LevelFatal)
	var counts []int
	for _, s := range strings.Split(*peersFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scale: -peers: %q is not a count\n", s)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	schedule := "normal rounds"
	if *overlap {
		schedule = "overlapped rounds"
	}
	fmt.Printf("links: %s latency, %s; MLP 784-%d-10, %d inner steps, topk+int8 at density %g, %s; %d rounds (figures over rounds 2..%d); GOMAXPROCS %d\n",
		*latency, bwString(*bandwidth), *hidden, *steps, *density, schedule, *rounds, *rounds-1, runtime.GOMAXPROCS(0))
	fmt.Println("| peers | round s | local work ms | last announce -> seal start ms | seal ms | seal share | seal -> applied everywhere ms (median / max) | late join s | heap MiB per peer | CPU ms per round per peer | utilisation |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, n := range counts {
		profile := ""
		if *cpuprofile != "" {
			profile = fmt.Sprintf("%s.%d", *cpuprofile, n)
		}
		r, err := runSwarm(n, *rounds, *hidden, *steps, *density, *latency, *bandwidth, *late, *overlap, profile, *deadline, *timeout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scale: %d peers: %v\n", n, err)
			os.Exit(1)
		}
		if r.dropped > 0 {
			fmt.Fprintf(os.Stderr, "scale: %d peers: %d contributors dropped out after joining\n", n, r.dropped)
		}
		lateJoin := "-"
		if *late {
			lateJoin = fmt.Sprintf("%.2f", r.lateJoin.Seconds())
		}
		fmt.Printf("| %d | %.2f | %.0f | %.0f | %.0f | %.1f %% | %.0f / %.0f | %s | %.1f | %.0f | %.0f %% |\n", n, r.round.Seconds(), ms(r.work), ms(r.collectGap), ms(r.seal), 100*r.seal.Seconds()/r.round.Seconds(),
			ms(r.applyMedian), ms(r.applyMax), lateJoin, r.heapPerPeer/(1<<20), ms(r.cpuPerRoundPerPeer), 100*r.utilisation)
	}
}

func bwString(mbit float64) string {
	if mbit == 0 {
		return "unlimited bandwidth"
	}
	return fmt.Sprintf("%g Mbit/s", mbit)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// liveProfile is the profile being written, if any: an interrupted run
// (SIGINT, SIGTERM: a swarm that does not finish) still leaves its
// profile readable.
var (
	profMu      sync.Mutex
	liveProfile *os.File
)

func stopProfileOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		profMu.Lock()
		if liveProfile != nil {
			pprof.StopCPUProfile()
			liveProfile.Close()
			fmt.Fprintln(os.Stderr, "scale: interrupted; the profile so far is in", liveProfile.Name())
		}
		os.Exit(130)
	}()
}

type result struct {
	dropped                                                        int // contributors lost after joining
	round, work, seal, collectGap, applyMedian, applyMax, lateJoin time.Duration
	cpuPerRoundPerPeer                                             time.Duration
	heapPerPeer                                                    float64
	// utilisation is the contributors' share of the round spent in local
	// work (node.Worked's Compute, rounds 2..): what overlapped rounds raise.
	utilisation float64
}

func hasJoinedNow(mu *sync.Mutex, joined *bool) bool {
	mu.Lock()
	defer mu.Unlock()
	return *joined
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}

// runSwarm runs one swarm of n contributors and measures it.
func runSwarm(n, rounds, hidden, steps int, density float64, latency time.Duration, mbit float64, late, overlap bool, profile string, deadline, timeout time.Duration) (result, error) {
	var res result
	// The profile covers the measured rounds: from round 1's seal to the
	// end, past the joins.
	var profErr error
	var profFile *os.File
	defer func() {
		profMu.Lock()
		defer profMu.Unlock()
		if liveProfile != nil {
			pprof.StopCPUProfile()
			liveProfile.Close()
			liveProfile = nil
		}
	}()
	quiet := slog.New(slog.DiscardHandler)
	heapBefore := heapInUse()
	mn := mocknet.New()
	defer mn.Close()
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency, Bandwidth: mbit * 1e6 / 8})
	hostNo := 0
	newHost := func() (host.Host, error) {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		hostNo++
		h, err := mn.AddPeer(k, ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", hostNo>>16, (hostNo>>8)&255, hostNo&255)))
		if err != nil {
			return nil, err
		}
		return h, mn.LinkAll()
	}
	tmp, err := os.MkdirTemp("", "swarmtrain-scale-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	sc := config.Default()
	sc.Name = "scale"
	sc.Model.Hidden = []int{hidden}
	sc.Train.Rounds = rounds
	sc.Train.InnerSteps = steps
	if overlap {
		sc.Round.Overlap = true
		sc.Train.OuterOptimizer.Momentum = 0.8 // the measured setting (benchmarks/sim -overlap)
	}
	sc.Train.ShardSize = 320
	sc.Compression.Density = density
	sc.Round.Quorum = n
	sc.Round.MinContributions = 1
	sc.Round.Deadline = config.Duration(deadline)
	sc.API.Listen = ""
	trainSet := data.Synthetic(20000, 1)

	var mu sync.Mutex
	sealAt := map[int64]time.Time{}
	sums := map[int64]node.RoundSummary{}
	applied := map[int64][]time.Time{}
	worked := map[int64][]time.Time{}     // each round's Worked events
	computed := map[int64]time.Duration{} // each round's local work, summed over its contributors
	type peerRound struct {
		peer  int
		round int64
	}
	appliedBy, workedBy := map[peerRound]time.Time{}, map[peerRound]time.Time{}
	cpuAt := map[int64]time.Duration{}
	var heapMid float64
	ready := make(chan [2]string, 1)
	ch, err := newHost()
	if err != nil {
		return res, err
	}
	// The coordinator's goroutines carry the pprof label role=coordinator
	// (goroutines inherit their creator's labels), the contributors'
	// role=contributor, so a -cpuprofile splits the process's CPU by role:
	// go tool pprof -tagfocus role=coordinator -top. Streams a peer serves
	// run on goroutines mocknet starts for the dialing peer: they carry
	// the dialer's label.
	var coord *node.Coordinator
	pprof.Do(context.Background(), pprof.Labels("role", "coordinator"), func(context.Context) {
		coord, err = node.NewCoordinator(node.CoordinatorConfig{Swarm: sc, DataDir: tmp + "/coordinator", Train: trainSet, ExitWhenDone: true, Log: quiet,
			Ready: func(id string, addrs []string, _ string) { ready <- [2]string{id, addrs[0]} },
			RoundDone: func(s node.RoundSummary) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				sealAt[s.Round], sums[s.Round], cpuAt[s.Round] = now, s, cpuTime()
				if s.Round == 1 && profile != "" {
					if profFile, profErr = os.Create(profile); profErr == nil {
						// pprof's default 100 Hz: at 1 kHz this loaded
						// machine's profiles held a fifth of the CPU time
						// getrusage counted, at 100 Hz all of it.
						profMu.Lock()
						if profErr = pprof.StartCPUProfile(profFile); profErr == nil {
							liveProfile = profFile
						}
						profMu.Unlock()
					}
				}
				if s.Round == int64(rounds/2) {
					go func() { h := heapInUse(); mu.Lock(); heapMid = h; mu.Unlock() }()
				}
			}}, node.WithHost(ch))
		if err == nil {
			if err = coord.Start(); err != nil {
				coord.Close()
			}
		}
	})
	if err != nil {
		return res, err
	}
	defer coord.Close()
	rd := <-ready
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	startContributor := func(i int, joined func()) error {
		h, err := newHost()
		if err != nil {
			return err
		}
		pprof.Do(context.Background(), pprof.Labels("role", "contributor"), func(context.Context) {
			wg.Go(func() {
				// A join that times out on the loaded machine is tried again
				// (at most 3 times); a failure after joining ends the run.
				hasJoined := false
				for try := 1; ; try++ {
					err := node.RunContributor(ctx, node.ContributorConfig{SwarmID: rd[0], Bootstrap: []string{rd[1]}, DataDir: fmt.Sprintf("%s/c%d", tmp, i), Train: trainSet, Log: quiet,
						Event: func(ev node.Event) {
							now := time.Now()
							mu.Lock()
							defer mu.Unlock()
							switch e := ev.(type) {
							case node.Applied:
								if i < n { // the late joiner's catching up is its join time
									applied[e.Round] = append(applied[e.Round], now)
								}
								appliedBy[peerRound{i, e.Round}] = now
							case node.Worked:
								workedBy[peerRound{i, e.Round}] = now
								worked[e.Round] = append(worked[e.Round], now)
								if i < n {
									computed[e.Round] += e.Compute
								}
							case node.Joined:
								hasJoined = true
								if joined != nil {
									joined()
								}
							}
						}}, node.WithHost(h))
					if err != nil && !errors.Is(err, context.Canceled) {
						mu.Lock()
						again := !hasJoined && try < 3
						mu.Unlock()
						if again {
							fmt.Fprintf(os.Stderr, "scale: contributor %d: join failed (%v), trying again\n", i, err)
							continue
						}
						if hasJoinedNow(&mu, &hasJoined) {
							// A peer lost after joining (on this machine: a
							// fetch that timed out) leaves the swarm smaller;
							// the run goes on and says so.
							fmt.Fprintf(os.Stderr, "scale: %d peers: contributor %d dropped out: %v\n", n, i, err)
							mu.Lock()
							res.dropped++
							mu.Unlock()
							return
						}
						errs <- fmt.Errorf("contributor %d: %w", i, err)
					}
					return
				}
			})
		})
		return nil
	}
	// Contributors join in batches of 8, each batch once the last has
	// joined: 64 simultaneous joins against one coordinator on two shared
	// cores time out in identify, which is a test of the machine, not of
	// the swarm.
	var joinedCount int
	joinedCh := make(chan struct{}, n)
	for i := range n {
		if err := startContributor(i, func() { joinedCh <- struct{}{} }); err != nil {
			return res, err
		}
		if (i+1)%8 == 0 || i == n-1 {
			for joinedCount < i+1 {
				select {
				case <-joinedCh:
					joinedCount++
				case err := <-errs:
					return res, err
				case <-time.After(5 * time.Minute):
					return res, fmt.Errorf("%d of %d contributors joined in 5 minutes", joinedCount, i+1)
				}
			}
		}
	}
	if late {
		// After round 2 is sealed: the late joiner fetches the manifest,
		// the head record and the latest checkpoint.
		for {
			mu.Lock()
			_, ok := sealAt[2]
			mu.Unlock()
			if ok {
				break
			}
			select {
			case <-coord.Done():
				return res, fmt.Errorf("the swarm ended before round 2: %v", coord.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		began := time.Now()
		if err := startContributor(n, func() { res.lateJoin = time.Since(began) }); err != nil {
			return res, err
		}
	}
	select {
	case <-coord.Done():
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if err := coord.Err(); err != nil {
		return res, err
	}
	mu.Lock()
	if profFile != nil {
		profMu.Lock()
		pprof.StopCPUProfile()
		profFile.Close()
		profFile, liveProfile = nil, nil
		profMu.Unlock()
	}
	mu.Unlock()
	if profErr != nil {
		return res, fmt.Errorf("cpu profile: %w", profErr)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return res, err
	}
	mu.Lock()
	defer mu.Unlock()
	// Rounds 2.. : past the joins. Round r runs from the seal of r-1 to
	// the seal of r.
	var roundSum, sealSum, gapSum, computeSum time.Duration
	var applyLags []time.Duration
	var applyMaxes []time.Duration
	counted := 0
	for r := int64(2); r < int64(rounds); r++ {
		prev, ok1 := sealAt[r-1]
		at, ok2 := sealAt[r]
		if !ok1 || !ok2 {
			continue
		}
		counted++
		roundSum += at.Sub(prev)
		computeSum += computed[r]
		sealSum += sums[r].SealTime
		sealStart := at.Add(-sums[r].SealTime)
		// The quorum's last announcement (the n-th) opened the seal.
		if w := worked[r]; len(w) >= n {
			slices.SortFunc(w, time.Time.Compare)
			gapSum += sealStart.Sub(w[n-1])
		}
		var worst time.Duration
		for _, t := range applied[r] {
			lag := t.Sub(at)
			applyLags = append(applyLags, lag)
			worst = max(worst, lag)
		}
		applyMaxes = append(applyMaxes, worst)
	}
	if counted == 0 {
		return res, fmt.Errorf("no round past the joins was sealed")
	}
	res.round = roundSum / time.Duration(counted)
	res.utilisation = computeSum.Seconds() / float64(n) / roundSum.Seconds()
	res.seal = sealSum / time.Duration(counted)
	res.collectGap = gapSum / time.Duration(counted)
	// Local work: from applying round r-1 to announcing round r, per peer.
	var works []time.Duration
	for k, w := range workedBy {
		if a, ok := appliedBy[peerRound{k.peer, k.round - 1}]; ok && k.round >= 2 {
			works = append(works, w.Sub(a))
		}
	}
	slices.Sort(works)
	if len(works) > 0 {
		res.work = works[len(works)/2]
	}
	slices.Sort(applyLags)
	slices.Sort(applyMaxes)
	if len(applyLags) > 0 {
		res.applyMedian = applyLags[len(applyLags)/2]
		res.applyMax = applyMaxes[len(applyMaxes)/2] // the median round's slowest peer
	}
	res.heapPerPeer = (heapMid - heapBefore) / float64(n+1)
	res.cpuPerRoundPerPeer = (cpuAt[int64(rounds-1)] - cpuAt[1]) / time.Duration(rounds-2) / time.Duration(n+1)
	return res, nil
}
