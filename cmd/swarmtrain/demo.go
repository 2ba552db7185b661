package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

func newDemoCmd(e *env) *cobra.Command {
	var peers, rounds int
	var mnistDir, workDir string
	var hidden []int
	cmd := &cobra.Command{
		Use:   "demo [--peers N]",
		Short: "Run a whole swarm on 127.0.0.1: one coordinator and N contributors as separate processes",
		Long: `demo starts "swarmtrain start" and N "swarmtrain join" processes on 127.0.0.1,
training the MNIST MLP with topk+int8 compression, prints one line per round and a
summary: accuracy, bytes each contributor sent against dense fp32, scores, and
the ledger's verification.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc := config.Default()
			sc.Name = "demo"
			if mnistDir != "" {
				sc.Data.Dir = mnistDir
			}
			if _, _, err := data.LoadMNIST(sc.DataDir()); err != nil {
				return err
			}
			sc.Data.Dir = sc.DataDir()
			sc.Model.Hidden = hidden
			sc.Train.Rounds = rounds
			sc.Round.Quorum = peers
			sc.Round.MinContributions = 1
			sc.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
			sc.API.Listen = "127.0.0.1:0"
			if err := sc.Validate(); err != nil {
				return err
			}
			if workDir == "" {
				d, err := os.MkdirTemp("", "swarmtrain-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				workDir = d
			}
			return runDemo(cmd.Context(), e, sc, peers, workDir)
		},
	}
	cmd.Flags().IntVar(&peers, "peers", 3, "contributors to start")
	cmd.Flags().IntVar(&rounds, "rounds", 40, "rounds to run")
	cmd.Flags().IntSliceVar(&hidden, "hidden", []int{256, 128}, "MLP hidden layer widths")
	cmd.Flags().StringVar(&mnistDir, "mnist-dir", "", "MNIST directory (default $SWARMTRAIN_DATA/mnist or ~/.cache/swarmtrain/data/mnist)")
	cmd.Flags().StringVar(&workDir, "work-dir", "", "keep the nodes' data dirs here (default: a temporary dir, removed at the end)")
	return cmd
}

var (
	joinLineRE  = regexp.MustCompile(`^\s+swarmtrain join (\S+) --bootstrap (\S+)`)
	apiLineRE   = regexp.MustCompile(`^api: (http://\S+)/v1/swarm`)
	roundLineRE = regexp.MustCompile(`^round\s+(\d+)\s+accepted (\d+)\s+rejected (\d+)\s+train loss (\S+)\s+test accuracy (\S+)%\s+bytes in (\d+)\s+seal (\S+)`)
)

func runDemo(ctx context.Context, e *env, sc *config.Swarm, peers int, dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfgYAML, err := yaml.Marshal(sc)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "swarm.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o644); err != nil {
		return err
	}
	spec := train.ModelSpec{Kind: sc.Model.Kind, Hidden: sc.Model.Hidden}
	m, err := train.New(spec, 1, 1)
	if err != nil {
		return err
	}
	denseBytes := 4 * m.NumParams()
	m.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var procs []*exec.Cmd
	var wg sync.WaitGroup
	defer func() {
		for _, p := range procs {
			if p.Process != nil {
				_ = p.Process.Signal(syscall.SIGINT)
			}
		}
		wg.Wait()
	}()
	start := func(name string, out io.Writer, args ...string) (*exec.Cmd, io.Reader, error) {
		c := exec.CommandContext(ctx, self, args...)
		c.Cancel = func() error { return c.Process.Signal(syscall.SIGINT) }
		c.WaitDelay = 5 * time.Second
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, nil, err
		}
		c.Stderr = logf
		var r io.Reader
		var pw *io.PipeWriter
		if out == nil {
			var pr *io.PipeReader
			pr, pw = io.Pipe()
			c.Stdout = io.MultiWriter(pw, logf)
			r = pr
		} else {
			c.Stdout = logf
		}
		if err := c.Start(); err != nil {
			return nil, nil, fmt.Errorf("starting %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Wait()
			if pw != nil {
				pw.Close()
			}
			logf.Close()
		}()
		procs = append(procs, c)
		return c, r, nil
	}
	began := time.Now()
	_, coordOut, err := start("coordinator", nil, "start", "--config", cfgPath, "--data-dir", filepath.Join(dir, "coordinator"), "--log-level", "warn")
	if err != nil {
		return err
	}
	lines := bufio.NewScanner(coordOut)
	var swarmID, bootstrap, api string
	for swarmID == "" && lines.Scan() {
		if mm := apiLineRE.FindStringSubmatch(lines.Text()); mm != nil {
			api = mm[1]
		}
		if mm := joinLineRE.FindStringSubmatch(lines.Text()); mm != nil {
			swarmID, bootstrap = mm[1], mm[2]
		}
	}
	if swarmID == "" {
		return fmt.Errorf("the coordinator stopped before printing its swarm ID; see %s", filepath.Join(dir, "coordinator.log"))
	}
	fmt.Fprintf(e.stdout, "swarm %s: coordinator at %s, %d contributors, %d rounds of %d inner steps, %s at density %g, MLP %v\n",
		swarmID, bootstrap, peers, sc.Train.Rounds, sc.Train.InnerSteps, sc.Compression.Codec, sc.Compression.Density, sc.Model.Hidden)
	for i := 0; i < peers; i++ {
		name := fmt.Sprintf("contributor-%d", i+1)
		if _, _, err := start(name, io.Discard, "join", swarmID, "--bootstrap", bootstrap, "--data-dir", filepath.Join(dir, name), "--mnist-dir", sc.Data.Dir, "--log-level", "warn"); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "%5s  %8s  %10s  %13s  %22s  %8s\n", "round", "accepted", "train loss", "test accuracy", "bytes sent/contributor", "seal")
	var last []string
	var totalBytes, totalContrib int
	for lines.Scan() {
		mm := roundLineRE.FindStringSubmatch(lines.Text())
		if mm == nil {
			continue
		}
		last = mm
		acc, _ := strconv.Atoi(mm[2])
		rej, _ := strconv.Atoi(mm[3])
		b, _ := strconv.Atoi(mm[6])
		per := 0
		if acc+rej > 0 {
			per = b / (acc + rej)
		}
		totalBytes += b
		totalContrib += acc + rej
		fmt.Fprintf(e.stdout, "%5s  %8s  %10s  %12s%%  %22d  %8s\n", mm[1], mm[2], mm[4], mm[5], per, mm[7])
		if n, _ := strconv.Atoi(mm[1]); n == sc.Train.Rounds-1 {
			break
		}
	}
	if last == nil {
		return fmt.Errorf("no round sealed; see the logs in %s", dir)
	}
	perContrib := totalBytes / max(totalContrib, 1)
	nr, _ := strconv.Atoi(last[1])
	fmt.Fprintf(e.stdout, "\nfinal test accuracy %s%% after %d rounds in %s\n", last[5], nr+1, time.Since(began).Round(time.Second))
	fmt.Fprintf(e.stdout, "each contribution: %d bytes on average; dense fp32 would be %d bytes (%.0fx more)\n", perContrib, denseBytes, float64(denseBytes)/float64(max(perContrib, 1)))
	if api != "" {
		fmt.Fprintln(e.stdout, "\nscores:")
		sc := newRoot(e)
		sc.SetArgs([]string{"scores", swarmID, "--api", api})
		if err := sc.ExecuteContext(ctx); err != nil {
			fmt.Fprintf(e.stdout, "  (scores unavailable: %v)\n", err)
		}
	}
	// Stop the nodes, then check the ledger the coordinator left on disk.
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGINT)
	}
	wg.Wait()
	procs = nil
	fmt.Fprintln(e.stdout)
	lg := newRoot(e)
	lg.SetArgs([]string{"ledger", "--verify", "--recheck", "--data-dir", filepath.Join(dir, "coordinator")})
	if err := lg.ExecuteContext(context.Background()); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
