package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// The smallest demo that still runs every step: two contributors, two
// rounds, a 16-unit hidden layer.
var tinyDemo = []string{"demo", "--rounds", "2", "--peers", "2", "--hidden", "16"}

// demoRuns is how many times TestDemoAlwaysEnds runs the demo: a hang that
// struck 3 runs in 7 needs many runs to show (make test-long runs 20);
// make test's -short pass runs 3.
func demoRuns() int {
	if testing.Short() {
		return 3
	}
	return 20
}

// demoRunDeadline bounds one tiny demo run. It takes 5 s on an idle
// 2-core machine and up to a minute on a loaded one; the hang this test
// exists for lasted forever.
const demoRunDeadline = 3 * time.Minute

// demoCmd is the built demo binary with its temporary directory under tmp.
func demoCmd(t *testing.T, ctx context.Context, tmp, mnist string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, builtBinary(t), append(args, "--dataset-dir", mnist)...)
	c.Env = append(os.Environ(), "TMPDIR="+tmp)
	// Past the deadline: a goroutine dump (SIGQUIT) says where it hung.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGQUIT) }
	c.WaitDelay = 10 * time.Second
	return c
}

// checkNothingLeft fails if tmp holds anything or a process still names it.
func checkNothingLeft(t *testing.T, tmp string) {
	t.Helper()
	if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("left behind in %s: %v", tmp, names)
	}
	if ps := processesMentioning(tmp); len(ps) > 0 {
		t.Errorf("processes left running:\n%s", strings.Join(ps, "\n"))
	}
}

// TestDemoAlwaysEnds runs the demo binary to completion many times in a row:
// each run must end within its deadline, exit 0, print the ledger check and
// leave no directory or process behind.
func TestDemoAlwaysEnds(t *testing.T) {
	if raceEnabled {
		t.Skip("separate processes the race detector does not reach: skipped with -race")
	}
	mnist := testdata.MNISTDir(t)
	began := time.Now()
	for i := 1; i <= demoRuns(); i++ {
		tmp := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), demoRunDeadline)
		start := time.Now()
		out, err := demoCmd(t, ctx, tmp, mnist, tinyDemo...).CombinedOutput()
		hung := errors.Is(ctx.Err(), context.DeadlineExceeded)
		cancel()
		if hung {
			t.Fatalf("run %d hung (no exit within %s); its output and goroutines:\n%s", i, demoRunDeadline, out)
		}
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		for _, want := range []string{"final test accuracy", "ledger ok: 2 rounds verified", "recheck ok:"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Fatalf("run %d: no %q in:\n%s", i, want, out)
			}
		}
		checkNothingLeft(t, tmp)
		took := time.Since(start).Round(100 * time.Millisecond)
		t.Logf("run %d: %s", i, took)
		if took > 30*time.Second {
			t.Logf("run %d was slow; its rounds (a seal time near round.deadline means a round waited for it):\n%s", i, out)
		}
	}
	t.Logf("%d runs in %s", demoRuns(), time.Since(began).Round(time.Second))
}

// TestDemoInterrupt sends SIGINT to the demo once rounds are running: it
// must stop its processes, remove its temporary directory, print one line
// saying so and exit 0.
func TestDemoInterrupt(t *testing.T) {
	if raceEnabled {
		t.Skip("separate processes the race detector does not reach: skipped with -race")
	}
	mnist := testdata.MNISTDir(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := demoCmd(t, ctx, tmp, mnist, "demo", "--rounds", "1000", "--peers", "2", "--hidden", "16")
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Read stdout to EOF whatever happens, so the demo never blocks on it.
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	sent := false
	for l := range lines {
		seen = append(seen, l)
		// Interrupt once the first round is sealed: every process is up.
		if !sent && strings.HasPrefix(strings.TrimSpace(l), "0 ") {
			if err := c.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			sent = true
		}
	}
	err = c.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the demo did not exit after SIGINT; output and goroutines:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	if !sent {
		t.Fatalf("no round was sealed; output:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	if err != nil {
		t.Fatalf("exit after SIGINT: %v, want 0\n%s\n%s", err, strings.Join(seen, "\n"), stderr.String())
	}
	last := seen[len(seen)-1]
	if !strings.HasPrefix(last, "demo interrupted: stopped 3 processes, removed "+tmp) || stderr.Len() > 0 {
		t.Errorf("last line %q, stderr %q; want one line saying the 3 processes were stopped and %s removed", last, stderr.String(), tmp)
	}
	checkNothingLeft(t, tmp)
}

// TestComputeTimeReadsWorkedLines: the demo's utilisation line sums what
// the contributors' "round N ... computed D" lines say, from the line
// format lines.go writes.
func TestComputeTimeReadsWorkedLines(t *testing.T) {
	var buf bytes.Buffer
	eventLine(&buf, node.Worked{Round: 0, Steps: 20, Samples: 100, Loss: 1, Bytes: 10, Compute: 1500 * time.Millisecond})
	eventLine(&buf, node.Applied{Round: 0})
	eventLine(&buf, node.Worked{Round: 1, Steps: 20, Samples: 100, Loss: 1, Bytes: 10, Compute: 250 * time.Millisecond})
	dir := t.TempDir()
	a, b := dir+"/a.log", dir+"/b.log"
	if err := os.WriteFile(a, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("joined swarm x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, n := computeTime([]*child{{log: a}, {log: b}, {log: dir + "/missing.log"}})
	if sum != 1750*time.Millisecond || n != 2 {
		t.Fatalf("computeTime = %s over %d logs, want 1.75s over 2", sum, n)
	}
}

// TestDemoText: demo --text runs a text swarm on a corpus made here, ends
// by itself, verifies its ledger, prints a sample continuing the prompt
// and leaves nothing behind.
func TestDemoText(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("a text swarm of separate processes, about 10 s: make test-long runs it")
	}
	textDir := wordCorpus(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), demoRunDeadline)
	defer cancel()
	c := exec.CommandContext(ctx, builtBinary(t), "demo", "--text", textDir, "--peers", "2", "--rounds", "2", "--prompt", "the cat ")
	c.Env = append(os.Environ(), "TMPDIR="+tmp)
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGQUIT) }
	c.WaitDelay = 10 * time.Second
	out, err := c.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the text demo did not end within %s:\n%s", demoRunDeadline, out)
	}
	if err != nil {
		t.Fatalf("demo --text: %v\n%s", err, out)
	}
	for _, want := range []string{"held-out bits/char", "final held-out", "ledger ok: 2 rounds verified", "recheck ok:", "\nsample (swarmtrain generate --model "} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("no %q in:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	sample := lines[len(lines)-1]
	if !strings.HasPrefix(sample, "the cat ") || len([]rune(sample)) != len("the cat ")+200 {
		t.Errorf("last line %q: want the prompt and 200 characters", sample)
	}
	checkNothingLeft(t, tmp)
}

// wordCorpus writes a 12,000-character text of ten words in a seeded order
// into a new directory: a text dataset a small transformer learns quickly.
func wordCorpus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var text strings.Builder
	rng := data.Rand(5)
	words := []string{"the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran ", "far, ", "away "}
	for text.Len() < 12000 {
		text.WriteString(words[rng.IntN(len(words))])
	}
	if err := os.WriteFile(filepath.Join(dir, "corpus.txt"), []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
