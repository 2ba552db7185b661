// Command kubo checks swarmtrain's records and checkpoints with a real IPFS
// node: it runs a small swarm (bin/swarmtrain start + join, a model large
// enough to span several UnixFS blocks), connects a Kubo daemon to the
// coordinator and checks, with Kubo's own commands, that
//
//   - `ipfs cat <model>` gives the bytes `swarmtrain export --raw` writes;
//   - `ipfs add -n` with the unixfs-v1-2025 parameters gives the model's CID;
//   - `ipfs dag resolve <head>/body/model` and `<head>/body/prev/body/model`
//     reach the models the last two rounds sealed;
//   - `ipfs pin add --recursive <head>` pins exactly the blocks
//     `swarmtrain ledger --verify --refs` lists.
//
// It is a program, not a test, because it needs a Kubo binary, which takes
// about 17 minutes to build here (see benchmarks/README.md for how):
//
//	go run ./benchmarks/kubo -ipfs /path/to/ipfs [-swarmtrain bin/swarmtrain]
//
// MNIST must be in $SWARMTRAIN_DATA/mnist (make data). It prints one line
// per check with its figure and exits 1 on the first check that fails.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ipfs := flag.String("ipfs", "", "path to a Kubo (ipfs) binary")
	st := flag.String("swarmtrain", "bin/swarmtrain", "path to the swarmtrain binary (make build)")
	rounds := flag.Int("rounds", 3, "rounds the swarm runs")
	hidden := flag.String("hidden", "1024, 512", "hidden layer sizes: 784-1024-512-10 is a 5.3 MB checkpoint, 6 UnixFS chunks")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	if *ipfs == "" {
		fmt.Fprintln(os.Stderr, "kubo: give -ipfs PATH (a Kubo binary)")
		os.Exit(2)
	}
	if err := run(*ipfs, *st, *rounds, *hidden, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "kubo:", err)
		os.Exit(1)
	}
}

type event struct {
	Type   string   `json:"type"`
	Swarm  string   `json:"swarm"`
	Addrs  []string `json:"addrs"`
	Round  int64    `json:"round"`
	Record string   `json:"record"`
	Model  string   `json:"model"`
}

func run(ipfs, st string, rounds int, hidden string, keep bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	st, err := filepath.Abs(st)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "swarmtrain-kubo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	// A swarm of one coordinator and one contributor.
	example, err := os.ReadFile("examples/mnist-mlp.yaml")
	if err != nil {
		return fmt.Errorf("%w (run from the repository root)", err)
	}
	cfg := string(example)
	for _, r := range []struct{ re, to string }{
		{`(?m)^(  rounds: )30`, fmt.Sprintf("${1}%d", rounds)},
		{`(?m)^(  hidden: )\[256, 128\]`, "${1}[" + hidden + "]"},
		{`(?m)^(  quorum: )2`, "${1}1"},
	} {
		next := regexp.MustCompile(r.re).ReplaceAllString(cfg, r.to)
		if next == cfg {
			return fmt.Errorf("examples/mnist-mlp.yaml: no line matches %s", r.re)
		}
		cfg = next
	}
	cfgPath := filepath.Join(tmp, "swarm.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	coordDir, events := filepath.Join(tmp, "coord"), filepath.Join(tmp, "events.jsonl")
	coord, err := background(ctx, filepath.Join(tmp, "start.log"), nil, st, "start", "--config", cfgPath, "--data-dir", coordDir, "--events", events)
	if err != nil {
		return err
	}
	defer stop(coord)
	ready, err := waitEvent(ctx, events, "ready")
	if err != nil {
		return err
	}
	addr := pick(ready.Addrs)
	peer, err := background(ctx, filepath.Join(tmp, "join.log"), nil, st, "join", ready.Swarm, "--bootstrap", addr, "--data-dir", filepath.Join(tmp, "peer"))
	if err != nil {
		return err
	}
	defer stop(peer)
	done, err := waitEvent(ctx, events, "done")
	if err != nil {
		return err
	}
	sealed, err := allEvents(events, "round_sealed")
	if err != nil {
		return err
	}
	if len(sealed) < 2 {
		return fmt.Errorf("%d rounds sealed, want at least 2 (for <head>/body/prev)", len(sealed))
	}
	head, model, prevModel := done.Record, done.Model, sealed[len(sealed)-2].Model
	fmt.Printf("swarm %s: %d rounds sealed, head %s, model %s\n", ready.Swarm, len(sealed), head, model)
	stop(peer)

	exported := filepath.Join(tmp, "export.safetensors")
	// --raw: the stored checkpoint as the CID names it (plain export adds
	// provenance to the metadata).
	if _, err := output(ctx, nil, st, "export", model, "-o", exported, "--bootstrap", addr, "--raw"); err != nil {
		return err
	}
	want, err := os.ReadFile(exported)
	if err != nil {
		return err
	}

	// A Kubo node of its own, with no bootstrap peers and no routing: it
	// finds blocks only by asking the peers it is connected to (bitswap).
	kenv := append(os.Environ(), "IPFS_PATH="+filepath.Join(tmp, "ipfs"))
	for _, args := range [][]string{
		{"init", "--profile=test"},
		{"config", "--json", "Bootstrap", "[]"},
		{"config", "Routing.Type", "none"},
	} {
		if _, err := output(ctx, kenv, ipfs, args...); err != nil {
			return err
		}
	}
	daemonLog := filepath.Join(tmp, "ipfs-daemon.log")
	daemon, err := background(ctx, daemonLog, kenv, ipfs, "daemon")
	if err != nil {
		return err
	}
	defer stop(daemon)
	if err := waitFile(ctx, daemonLog, "Daemon is ready"); err != nil {
		return err
	}
	version, _ := output(ctx, kenv, ipfs, "version")
	fmt.Printf("%s", version)
	if _, err := output(ctx, kenv, ipfs, "swarm", "connect", addr); err != nil {
		return err
	}
	fmt.Printf("ipfs swarm connect %s: ok\n", addr)

	start := time.Now()
	got, err := output(ctx, kenv, ipfs, "cat", model)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("ipfs cat %s: %d bytes, not the %d bytes swarmtrain export --raw wrote", model, len(got), len(want))
	}
	fmt.Printf("ipfs cat %s: %d bytes in %v, byte-identical to swarmtrain export --raw\n", model, len(got), time.Since(start).Round(time.Millisecond))

	added, err := output(ctx, kenv, ipfs, "add", "-n", "-Q", "--cid-version=1", "--raw-leaves", "--chunker=size-1048576", "--max-file-links=1024", exported)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(added)) != model {
		return fmt.Errorf("ipfs add -n (unixfs-v1-2025 parameters): %s, the record says %s", strings.TrimSpace(string(added)), model)
	}
	fmt.Printf("ipfs add -n --cid-version=1 --raw-leaves --chunker=size-1048576 --max-file-links=1024: %s, the record's model CID\n", model)

	for path, want := range map[string]string{head + "/body/model": model, head + "/body/prev/body/model": prevModel} {
		got, err := output(ctx, kenv, ipfs, "dag", "resolve", path)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(got)) != want {
			return fmt.Errorf("ipfs dag resolve %s: %s, want %s", path, strings.TrimSpace(string(got)), want)
		}
		fmt.Printf("ipfs dag resolve %s: %s\n", path, want)
	}
	dag, err := output(ctx, kenv, ipfs, "dag", "get", head)
	if err != nil {
		return err
	}
	var rec struct {
		Kind string `json:"kind"`
		Body struct {
			Round int64 `json:"round"`
			Model struct {
				Link string `json:"/"`
			} `json:"model"`
		} `json:"body"`
	}
	if err := json.Unmarshal(dag, &rec); err != nil || rec.Kind != "round" || rec.Body.Model.Link != model {
		return fmt.Errorf("ipfs dag get %s: %v: %.300s", head, err, dag)
	}
	fmt.Printf("ipfs dag get %s: a round record, round %d, body.model a link to %s\n", head, rec.Body.Round, model)

	start = time.Now()
	if _, err := output(ctx, kenv, ipfs, "pin", "add", "--recursive", head); err != nil {
		return err
	}
	pinTime := time.Since(start)
	refsOut, err := output(ctx, kenv, ipfs, "refs", "-r", "--unique", head)
	if err != nil {
		return err
	}
	pinned := append([]string{head}, strings.Fields(string(refsOut))...)

	// The coordinator's own list, from its data dir once it has stopped.
	stop(coord)
	ledger, err := output(ctx, nil, st, "ledger", "--verify", "--refs", "--data-dir", coordDir)
	if err != nil {
		return err
	}
	var listed []string
	missing := 0
	sc := bufio.NewScanner(bytes.NewReader(ledger))
	inRefs := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "refs: "):
			inRefs = true
		case inRefs && strings.HasPrefix(line, "missing "):
			missing++
		case inRefs && line != "":
			listed = append(listed, line)
		}
	}
	slices.Sort(pinned)
	slices.Sort(listed)
	if !slices.Equal(pinned, listed) || missing != 0 {
		return fmt.Errorf("ipfs pin add --recursive %s pinned %d blocks, swarmtrain ledger --refs lists %d (%d missing)", head, len(pinned), len(listed), missing)
	}
	fmt.Printf("ipfs pin add --recursive %s: %d blocks in %v, the same set swarmtrain ledger --verify --refs lists\n", head, len(pinned), pinTime.Round(time.Millisecond))
	return nil
}

// background starts a command with its output in logPath.
func background(ctx context.Context, logPath string, env []string, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := exec.CommandContext(ctx, name, args...)
	c.Stdout, c.Stderr, c.Env = f, f, env
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGINT) }
	c.WaitDelay = 20 * time.Second
	if err := c.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// stop interrupts a background command and waits for it; a second call
// does nothing.
func stop(c *exec.Cmd) {
	if c.ProcessState != nil || c.Process == nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGINT)
	_ = c.Wait()
}

// output runs a command to completion and returns its stdout; a failure
// names the command and says what it printed on stderr.
func output(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = env
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// waitEvent polls a start --events file for the first event of a type.
func waitEvent(ctx context.Context, path, typ string) (event, error) {
	for {
		evs, err := allEvents(path, typ)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return event{}, err
		}
		if len(evs) > 0 {
			return evs[0], nil
		}
		select {
		case <-ctx.Done():
			return event{}, fmt.Errorf("no %q event in %s: %w", typ, path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func allEvents(path, typ string) ([]event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []event
	for _, line := range strings.Split(string(b), "\n") {
		var ev event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out, nil
}

// waitFile polls a log until it contains s.
func waitFile(ctx context.Context, path, s string) error {
	for {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(s)) {
			return nil
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(path)
			return fmt.Errorf("%s never said %q: %w\n%s", path, s, ctx.Err(), b)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// pick prefers a TCP address: every Kubo build dials TCP.
func pick(addrs []string) string {
	for _, a := range addrs {
		if strings.Contains(a, "/tcp/") {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return ""
}
