package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

func newDemoCmd(e *env) *cobra.Command {
	var peers, rounds int
	var overlap bool
	var datasetFlag, workDir, textDir, prompt string
	var hidden []int
	cmd := &cobra.Command{
		Use:   "demo [--peers N] [--rounds N] [--overlap] [--text DIR]",
		Short: "Run a whole swarm on 127.0.0.1: one coordinator and N contributors as separate processes",
		Long: `demo starts "swarmtrain start" and N "swarmtrain join" processes on 127.0.0.1,
training the MNIST MLP with topk+int8 compression, prints one line per round and a
summary: accuracy, bytes each contributor sent against dense fp32, scores, and
the ledger's verification. It follows the coordinator through start --events.

With --text DIR (a directory holding one UTF-8 .txt or .txt.gz file, e.g. the
Brown corpus) the swarm trains a small character-level transformer instead,
prints held-out bits per character each round, and ends with a sample the
final model generates from --prompt.

Ctrl-C stops every process it started, removes its temporary directory and
exits 0. The processes' logs are kept only when something fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if peers < 1 || rounds < 1 {
				return fmt.Errorf("--peers and --rounds must be at least 1 (got %d and %d)", peers, rounds)
			}
			sc := config.Default()
			sc.Name = "demo"
			if textDir != "" {
				if !cmd.Flags().Changed("rounds") {
					rounds = textDemoRounds
				}
				if err := textDemoConfig(sc, textDir); err != nil {
					return err
				}
			} else {
				dsDir, why := datasetDir(sc, datasetFlag, "")
				if err := checkMNISTPresent(dsDir, why); err != nil {
					return err
				}
				sc.Data.Dir = absDir(dsDir)
				sc.Model.Hidden = hidden
			}
			sc.Train.Rounds = rounds
			// The demo shows tier 3 at work: one contribution a round recomputed
			// from its committed state, a proven fault excluded for 8 rounds.
			sc.Verify.Audits, sc.Verify.ExcludeRounds = 1, 8
			sc.Round.Quorum = peers
			sc.Round.MinContributions = 1
			if overlap {
				// Overlapped rounds with the outer momentum measured for them
				// (benchmarks/README.md, "Overlapped rounds").
				sc.Round.Overlap = true
				sc.Train.OuterOptimizer.Momentum = overlapMomentum
			}
			sc.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
			sc.API.Listen = "127.0.0.1:0"
			if err := sc.Validate(); err != nil {
				return err
			}
			temp := workDir == ""
			if temp {
				d, err := os.MkdirTemp("", "swarmtrain-demo-")
				if err != nil {
					return err
				}
				workDir = d
			} else if err := os.MkdirAll(workDir, 0o755); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			d := &demo{e: e, sc: sc, peers: peers, dir: workDir, self: self, prompt: prompt}
			err = d.run(cmd.Context())
			n := d.stopAll()
			switch {
			case interrupted(cmd):
				what := "kept " + workDir
				if temp {
					os.RemoveAll(workDir)
					what = "removed " + workDir
				}
				fmt.Fprintf(e.stdout, "demo interrupted: stopped %d processes, %s\n", n, what)
				return nil
			case err != nil:
				if temp {
					d.removeNodeDirs() // the logs say what happened; the blocks are 50 MB
				}
				return fmt.Errorf("%w (logs in %s)", err, workDir)
			case temp:
				os.RemoveAll(workDir)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&peers, "peers", 3, "contributors to start")
	cmd.Flags().IntVar(&rounds, "rounds", 40, "rounds to run")
	cmd.Flags().BoolVar(&overlap, "overlap", false, "overlapped rounds (round.overlap, outer momentum 0.8): contributors work the next round while the last is sealed")
	cmd.Flags().IntSliceVar(&hidden, "hidden", []int{256, 128}, "MLP hidden layer widths")
	addDatasetFlag(cmd.Flags(), &datasetFlag, "mnist-dir")
	cmd.Flags().StringVar(&textDir, "text", "", "train a character-level transformer on the text in DIR (one .txt or .txt.gz file) and print a sample at the end")
	cmd.Flags().StringVar(&prompt, "prompt", "The ", "with --text: the prompt of the final sample")
	cmd.Flags().StringVar(&workDir, "work-dir", "", "keep the nodes' data dirs and logs here (default: a temporary dir, removed at the end)")
	return cmd
}

// overlapMomentum is the outer momentum of an overlapped demo: with
// one-step-delayed application, 0.8 measured at or above 0.9 for every
// sparse codec in benchmarks/sim (benchmarks/README.md).
const overlapMomentum = 0.8

// Bounds that keep the demo from waiting forever on a process that went
// wrong; each failure names the log to read.
const (
	demoReadyTimeout = 2 * time.Minute  // coordinator: load MNIST, open its store, listen
	demoStopTimeout  = 10 * time.Second // SIGINT, then SIGKILL
)

// demo runs the coordinator and contributors as child processes. Their
// stdout and stderr go straight to log files (no pipe the demo must keep
// reading); the coordinator's events come over a pipe that a goroutine
// reads until EOF, whatever the demo is doing.
type demo struct {
	e      *env
	sc     *config.Swarm
	peers  int
	dir    string
	self   string
	prompt string // a text demo's sample prompt

	children []*child
	exited   chan *child // every child, once, when it exits
}

type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
}

func (d *demo) start(name string, extra []*os.File, args ...string) (*child, error) {
	if d.exited == nil {
		d.exited = make(chan *child, d.peers+1)
	}
	logPath := filepath.Join(d.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	c := exec.Command(d.self, args...)
	c.Stdout, c.Stderr = logf, logf
	c.ExtraFiles = extra
	ownProcessGroup(c)
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	ch := &child{name: name, cmd: c, log: logPath, done: make(chan struct{})}
	d.children = append(d.children, ch)
	go func() {
		ch.err = c.Wait()
		close(ch.done)
		d.exited <- ch
	}()
	return ch, nil
}

// stopAll sends SIGINT to every child still running, waits for them, and
// kills those that have not exited within demoStopTimeout. It returns how
// many were running.
func (d *demo) stopAll() int {
	n := 0
	for _, c := range d.children {
		select {
		case <-c.done:
		default:
			n++
			_ = c.cmd.Process.Signal(syscall.SIGINT)
		}
	}
	deadline := time.NewTimer(demoStopTimeout)
	defer deadline.Stop()
	for _, c := range d.children {
		select {
		case <-c.done:
		case <-deadline.C:
			for _, k := range d.children {
				_ = k.cmd.Process.Kill()
			}
			<-c.done
		}
	}
	for _, c := range d.children {
		<-c.done
	}
	return n
}

// removeNodeDirs removes the nodes' directories and keeps the logs.
func (d *demo) removeNodeDirs() {
	for _, c := range d.children {
		os.RemoveAll(filepath.Join(d.dir, c.name))
	}
}

// failure describes a child that stopped: its exit and its log's last line.
func (c *child) failure() error {
	last := ""
	if b, err := os.ReadFile(c.log); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		last = strings.TrimSpace(lines[len(lines)-1])
	}
	how := "exited"
	if c.err != nil {
		how = c.err.Error()
	}
	if last == "" {
		return fmt.Errorf("%s stopped (%s); see %s", c.name, how, c.log)
	}
	return fmt.Errorf("%s stopped (%s): %s", c.name, how, last)
}

// readEvents decodes the coordinator's events from r until EOF. It keeps
// reading after stop is closed, dropping what it reads, so the coordinator
// never blocks on a full pipe; it closes the channel at EOF.
func readEvents(r *os.File, stop <-chan struct{}) <-chan anyEvent {
	ch := make(chan anyEvent)
	go func() {
		defer close(ch)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev anyEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			select {
			case ch <- ev:
			case <-stop:
			}
		}
	}()
	return ch
}

func (d *demo) run(ctx context.Context) error {
	e, sc := d.e, d.sc
	cfgYAML, err := yaml.Marshal(sc)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(d.dir, "swarm.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o644); err != nil {
		return err
	}
	denseBytes, err := denseSize(sc)
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	stopReading := make(chan struct{})
	defer close(stopReading)
	began := time.Now()
	// The pipe's write end is the coordinator's descriptor 3.
	coord, err := d.start("coordinator", []*os.File{pw}, "start", "--config", cfgPath, "--data-dir", filepath.Join(d.dir, "coordinator"),
		"--events", "/dev/fd/3", "--log-level", "warn")
	pw.Close() // the coordinator holds the only write end now: EOF when it exits
	if err != nil {
		pr.Close()
		return err
	}
	events := readEvents(pr, stopReading)

	var ready readyEvent
	timeout := time.NewTimer(demoReadyTimeout)
	defer timeout.Stop()
	for ready.Swarm == "" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("the coordinator was not ready within %s; see %s", demoReadyTimeout, coord.log)
		case ev, ok := <-events:
			if !ok {
				<-coord.done
				return coord.failure()
			}
			if ev.Type == "ready" {
				ready = ev.Ready
			}
		}
	}
	bootstrap := pickAddr(ready.Addrs)
	text := sc.Model.Kind == "transformer"
	model := fmt.Sprintf("MLP %v", sc.Model.Hidden)
	if text {
		model = fmt.Sprintf("transformer of %d layers, width %d, context %d on %s (vocabulary %d)", sc.Model.Layers, sc.Model.Width, sc.Model.Context, sc.Data.Dir, sc.Data.Classes)
	}
	fmt.Fprintf(e.stdout, "swarm %s: coordinator at %s, %d contributors, %d rounds of %d inner steps, %s at density %g, %s\n",
		ready.Swarm, bootstrap, d.peers, sc.Train.Rounds, sc.Train.InnerSteps, sc.Compression.Codec, sc.Compression.Density, model)
	joined := time.Now()
	var contributors []*child
	for i := 1; i <= d.peers; i++ {
		name := fmt.Sprintf("contributor-%d", i)
		ch, err := d.start(name, nil, "join", ready.Swarm, "--bootstrap", bootstrap, "--data-dir", filepath.Join(d.dir, name),
			"--dataset-dir", sc.Data.Dir, "--log-level", "warn")
		if err != nil {
			return err
		}
		contributors = append(contributors, ch)
	}

	metric := "test accuracy"
	if text {
		metric = "held-out bits/char"
	}
	fmt.Fprintf(e.stdout, "%5s  %8s  %10s  %13s  %22s  %8s\n", "round", "accepted", "train loss", metric, "bytes sent/contributor", "seal")
	// A round seals at its deadline with one contribution: far longer
	// without one means every contributor is stuck.
	stall := 3*sc.Round.Deadline.D() + time.Minute
	timeout.Reset(stall)
	var last roundSealedEvent
	var done doneEvent
	var totalBytes, totalContrib int
	for done.Model == "" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("no round sealed for %s; see the logs", stall)
		case c := <-d.exited:
			// Contributors exit 0 after the last round, which may come
			// before the demo reads the done event.
			if c == coord || c.err != nil {
				return c.failure()
			}
		case ev, ok := <-events:
			if !ok {
				<-coord.done
				return coord.failure()
			}
			switch ev.Type {
			case "round_sealed":
				s := ev.Sealed
				last = s
				n := s.Accepted + s.Rejected
				per := s.BytesIn / max(n, 1)
				totalBytes += s.BytesIn
				totalContrib += n
				if text {
					fmt.Fprintf(e.stdout, "%5d  %8d  %10.4f  %18.3f  %22d  %8s\n", s.Round, s.Accepted, s.TrainLoss, s.TestLoss/math.Ln2, per, time.Duration(s.SealMS)*time.Millisecond)
				} else {
					fmt.Fprintf(e.stdout, "%5d  %8d  %10.4f  %12.2f%%  %22d  %8s\n", s.Round, s.Accepted, s.TrainLoss, 100*s.TestAccuracy, per, time.Duration(s.SealMS)*time.Millisecond)
				}
				timeout.Reset(stall)
			case "done":
				done = ev.Done
			}
		}
	}
	ran := time.Since(joined)
	perContrib := totalBytes / max(totalContrib, 1)
	if text {
		fmt.Fprintf(e.stdout, "\nfinal held-out %.3f bits/char after %d rounds in %s; final model %s\n", last.TestLoss/math.Ln2, done.Rounds, time.Since(began).Round(time.Second), done.Model)
	} else {
		fmt.Fprintf(e.stdout, "\nfinal test accuracy %.2f%% after %d rounds in %s; final model %s\n", 100*last.TestAccuracy, done.Rounds, time.Since(began).Round(time.Second), done.Model)
	}
	fmt.Fprintf(e.stdout, "each contribution: %d bytes on average; dense fp32 would be %d bytes (%.0fx more)\n", perContrib, denseBytes, float64(denseBytes)/float64(max(perContrib, 1)))
	if ready.API != "" {
		fmt.Fprintln(e.stdout, "\nscores:")
		sc := newRoot(d.e)
		sc.SetArgs([]string{"scores", ready.Swarm, "--api", "http://" + ready.API})
		if err := sc.ExecuteContext(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(e.stdout, "  (scores unavailable: %v)\n", err)
		}
	}
	// Stop the nodes, then check the ledger the coordinator left on disk.
	d.stopAll()
	if coord.err != nil {
		return coord.failure()
	}
	if busy, n := computeTime(contributors); n > 0 {
		fmt.Fprintf(e.stdout, "\ncontributor utilisation: %.0f%% of the wall time computing (%s of local work each on average, in %s from their start to the last seal)\n",
			100*busy.Seconds()/float64(n)/ran.Seconds(), (busy / time.Duration(n)).Round(time.Millisecond), ran.Round(time.Millisecond))
	}
	fmt.Fprintln(e.stdout)
	lg := newRoot(d.e)
	lg.SetArgs([]string{"ledger", "--verify", "--recheck", "--audit-data", d.sc.Data.Dir, "--data-dir", filepath.Join(d.dir, "coordinator")})
	if err := lg.ExecuteContext(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if !text {
		return nil
	}
	// What the swarm learned, in words: the final model (read from the
	// stopped coordinator's store by its CID) continues the prompt.
	fmt.Fprintf(e.stdout, "\nsample (swarmtrain generate --model %s --temperature 0.8):\n", done.Model)
	g := newRoot(d.e)
	g.SetArgs([]string{"generate", "--model", done.Model, "--config", cfgPath, "--data-dir", filepath.Join(d.dir, "coordinator"),
		"--prompt", d.prompt, "--tokens", "200", "--temperature", "0.8"})
	if err := g.ExecuteContext(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("generate: %w", err)
	}
	return nil
}

// textDemoRounds is a text demo's default length: enough rounds for the
// small transformer to spell words (on the Brown corpus), a few minutes
// on a laptop.
const textDemoRounds = 30

// textDemoConfig makes sc the text demo's swarm: a small character-level
// transformer on the text in dir, pinned by its content hash and
// vocabulary as a user's config would be.
func textDemoConfig(sc *config.Swarm, dir string) error {
	spec, described, err := data.Describe("text", dir)
	if err != nil {
		return fmt.Errorf("--text %s: %w", dir, err)
	}
	sc.Model = config.Model{Kind: "transformer", Layers: 2, Width: 64, Heads: 4, Context: 64}
	// 0.5 % held out: the coordinator evaluates every round on all of it,
	// and the Brown corpus's 10 % would be 9,000 windows a round (its
	// 0.5 % is 30,000 characters). A small text holds out 10 windows, up
	// to the usual 10 %.
	chars := float64(len(described.Tokens)) / (1 - data.DefaultHeldOut)
	heldOut := min(data.DefaultHeldOut, max(0.005, float64(10*(sc.Model.Context+1))/chars))
	spec.Context, spec.HeldOut = sc.Model.Context, heldOut
	trainSet, _, err := data.Load(spec, dir)
	if err != nil {
		return fmt.Errorf("--text %s: %w", dir, err)
	}
	sc.Data = config.Data{Name: "demo-text", Kind: "text", Hash: spec.Hash, Classes: trainSet.NumClasses(), HeldOut: heldOut, Dir: absDir(dir)}
	sc.Train.BatchSize = 16
	// An MLP's 1 % of coordinates is too few for attention's weights:
	// brown-transformer.yaml's 10 %.
	sc.Compression.Density = 0.1
	// Tier 2 runs a sampled update 4 times on 1,000 windows: one a round
	// keeps the seal a few seconds on a laptop.
	sc.Verify.Tier2Sample = 1
	sc.Train.ShardSize = min(sc.Train.ShardSize, trainSet.N)
	sc.Train.InnerOptimizer = config.Optimizer{Name: "adam", LR: 3e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}
	return nil
}

// computeTime sums the local work the contributors' logs report ("computed
// D" on each round's line), and says how many logs it read.
func computeTime(cs []*child) (time.Duration, int) {
	var sum time.Duration
	n := 0
	for _, c := range cs {
		b, err := os.ReadFile(c.log)
		if err != nil {
			continue
		}
		n++
		for _, line := range strings.Split(string(b), "\n") {
			if _, after, ok := strings.Cut(line, "  computed "); ok {
				if d, err := time.ParseDuration(strings.TrimSpace(after)); err == nil {
					sum += d
				}
			}
		}
	}
	return sum, n
}

// denseSize is what one contribution would weigh as dense fp32.
func denseSize(sc *config.Swarm) (int, error) {
	n, err := train.NumParams(node.ModelSpec(sc))
	if err != nil {
		return 0, err
	}
	return 4 * n, nil
}
