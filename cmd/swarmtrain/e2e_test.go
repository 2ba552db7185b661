package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// proc is a swarmtrain process whose stdout lines the test can wait on.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
	done  bool
	err   error // the exit, once done
}

// wait waits until the process has exited and returns how it exited.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	timer := time.AfterFunc(d, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.done {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not exit within %s; last lines:\n%s", p.cmd.Args, d, strings.Join(p.lines[max(0, len(p.lines)-10):], "\n"))
		}
		p.cond.Wait()
	}
	return p.err
}

// output is every stdout line so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func spawn(t *testing.T, bin, logPath string, args ...string) *proc {
	t.Helper()
	return spawnCmd(t, exec.Command(bin, args...), logPath)
}

// spawnCmd starts c (its Dir and Env as the caller set them) with its
// stdout read line by line until EOF and copied, with its stderr, to logPath.
func spawnCmd(t *testing.T, c *exec.Cmd, logPath string) *proc {
	t.Helper()
	p := &proc{cmd: c}
	p.cond = sync.NewCond(&p.mu)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(io.TeeReader(out, logf))
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		err := p.cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.done = true
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		if !done {
			p.cmd.Process.Kill()
		}
	})
	return p
}

// waitLine waits until a line matches re and returns its submatches.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; ; {
		for ; i < len(p.lines); i++ {
			if m := re.FindStringSubmatch(p.lines[i]); m != nil {
				return m
			}
		}
		if p.done || time.Now().After(deadline) {
			t.Fatalf("no line matching %q within %s (process done: %v); last lines:\n%s", re, d, p.done, strings.Join(p.lines[max(0, len(p.lines)-10):], "\n"))
		}
		p.cond.Wait()
	}
}

func (p *proc) count(re *regexp.Regexp) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func sealedRE(r int) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`^round\s+%d\s+accepted (\d+)\s+rejected \d+\s+train loss \S+\s+test accuracy (\S+)%%`, r))
}

// TestEndToEndSwarm runs real processes on 127.0.0.1: one start and four
// join train the MNIST MLP with topk+int8; a contributor is SIGKILLed
// mid-run, a fifth joins late, the coordinator is SIGKILLed and restarted on
// its data dir; no sealed round is lost, accuracy reaches 97 %, every
// replayed model matches its record, scores list every contributor, and the
// ledger verifies — and stops verifying, naming the record, once a stored
// record is altered.
func TestEndToEndSwarm(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("the 40-round end-to-end swarm runs in make test-long (separate processes, which -race does not reach)")
	}
	mnist := testdata.MNISTDir(t)
	dir := t.TempDir()
	bin := builtBinary(t)
	const rounds = 40
	port := freePort(t)
	cfg := writeFile(t, "swarm.yaml", fmt.Sprintf(`name: e2e
model: {kind: mlp, hidden: [256, 128]}
data: {dir: %s}
train: {rounds: %d, inner_steps: 20}
compression: {codec: topk+int8, density: 0.01}
round: {deadline: 15s, quorum: 4, min_contributions: 1}
network: {listen: ["/ip4/127.0.0.1/tcp/%d"]}
api: {listen: "127.0.0.1:0"}
`, mnist, rounds, port))
	coordDir := filepath.Join(dir, "coordinator")
	coord := spawn(t, bin, filepath.Join(dir, "coordinator.log"), "start", "--config", cfg, "--data-dir", coordDir)
	join := coord.waitLine(t, regexp.MustCompile(`^\s+\S*swarmtrain join (\S+) --bootstrap (\S+)`), 60*time.Second)
	swarmID, boot := join[1], join[2]

	contribs := map[string]*proc{}
	startContrib := func(name string) {
		contribs[name] = spawn(t, bin, filepath.Join(dir, name+".log"), "join", swarmID, "--bootstrap", boot,
			"--data-dir", filepath.Join(dir, name), "--dataset-dir", mnist)
	}
	for i := 1; i <= 4; i++ {
		startContrib(fmt.Sprintf("c%d", i))
	}
	coord.waitLine(t, sealedRE(2), 2*time.Minute)
	// SIGKILL one contributor mid-run: rounds must go on.
	contribs["c4"].cmd.Process.Signal(syscall.SIGKILL)
	coord.waitLine(t, sealedRE(5), 2*time.Minute)
	startContrib("c5") // joins after round 5
	contribs["c5"].waitLine(t, regexp.MustCompile(`^joined swarm .* at round (\d+)`), time.Minute)
	m := coord.waitLine(t, sealedRE(12), 3*time.Minute)
	_ = m
	// SIGKILL the coordinator and start it again on the same data dir.
	coord.cmd.Process.Signal(syscall.SIGKILL)
	coord.cmd.Process.Wait()
	coord = spawn(t, bin, filepath.Join(dir, "coordinator-2.log"), "start", "--config", cfg, "--data-dir", coordDir)
	res := coord.waitLine(t, regexp.MustCompile(`^resuming swarm (\S+) after round (\d+)`), time.Minute)
	if res[1] != swarmID {
		t.Fatalf("restarted coordinator runs swarm %s, want %s", res[1], swarmID)
	}
	if r, _ := strconv.Atoi(res[2]); r < 12 {
		t.Fatalf("resumed after round %d: sealed rounds were lost (12 had been sealed)", r)
	}
	api := coord.waitLine(t, regexp.MustCompile(`^api: (http://\S+)/v1/swarm`), time.Minute)[1]
	last := coord.waitLine(t, sealedRE(rounds-1), 5*time.Minute)
	acc, _ := strconv.ParseFloat(last[2], 64)
	t.Logf("final test accuracy %.2f%%", acc)
	if acc < 97 {
		t.Errorf("final test accuracy %.2f%%, want >= 97%%", acc)
	}
	// The late joiner contributed after round 5.
	if n := contribs["c5"].count(regexp.MustCompile(`^round\s+\d+\s+20 steps`)); n < 5 {
		t.Errorf("the late joiner made %d contributions", n)
	}
	// Steady contributors replayed every round to the record's model CID.
	for _, name := range []string{"c1", "c2", "c3"} {
		p := contribs[name]
		replayed := p.count(regexp.MustCompile(`^applied round \d+: model \S+ replayed locally, CID matches the record`))
		fetched := p.count(regexp.MustCompile(`^applied round \d+: model \S+ fetched by CID`))
		t.Logf("%s: %d rounds replayed to the record's CID, %d fetched", name, replayed, fetched)
		if replayed < rounds-5 {
			t.Errorf("%s: only %d of %d rounds replayed to the record's model CID (%d fetched)", name, replayed, rounds, fetched)
		}
	}
	code, stdout, stderr := swarmtrain(t, "scores", swarmID, "--api", api)
	if code != 0 {
		t.Fatalf("scores: %s", stderr)
	}
	// The same scores over the p2p network: head protocol, record by CID, signature checked.
	code, p2pOut, stderr := swarmtrain(t, "scores", swarmID, "--bootstrap", boot)
	if code != 0 {
		t.Fatalf("scores --bootstrap: %s", stderr)
	}
	for name, p := range contribs {
		id := p.waitLine(t, regexp.MustCompile(`^joined swarm \S+ \(e2e\) as (\S+)`), time.Second)[1]
		if !strings.Contains(stdout, id) || !strings.Contains(p2pOut, id) {
			t.Errorf("scores do not list %s (%s):\n--api:\n%s\n--bootstrap:\n%s", name, id, stdout, p2pOut)
		}
	}
	// One peer's history, from the API and from a verified copy of the ledger.
	c1 := contribs["c1"].waitLine(t, regexp.MustCompile(`^joined swarm \S+ \(e2e\) as (\S+)`), time.Second)[1]
	for _, via := range [][]string{{"--api", api}, {"--bootstrap", boot}} {
		code, out, stderr := swarmtrain(t, append([]string{"scores", swarmID, "--peer", c1}, via...)...)
		if code != 0 || !strings.Contains(out, "peer "+c1+": ") || !regexp.MustCompile(`(?m)^39\s+accepted\s`).MatchString(out) {
			t.Fatalf("scores --peer %s: exit %d\n%s%s", via[0], code, out, stderr)
		}
		if via[0] == "--api" {
			t.Logf("scores --peer (last lines):\n%s", out[max(0, len(out)-400):])
		}
	}
	// An observer copies the ledger from the running swarm and rechecks it.
	code, stdout, stderr = swarmtrain(t, "ledger", swarmID, "--verify", "--recheck", "--bootstrap", boot)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("copied %d rounds", rounds)) || !strings.Contains(stdout, "recheck ok:") {
		t.Fatalf("ledger --recheck --bootstrap: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("observer over p2p:\n%s", stdout)
	// Stop everything, then verify the ledger on disk.
	coord.cmd.Process.Signal(syscall.SIGINT)
	coord.cmd.Process.Wait()
	for _, p := range contribs {
		p.cmd.Process.Signal(syscall.SIGINT)
		p.cmd.Process.Wait()
	}
	code, stdout, stderr = swarmtrain(t, "ledger", "--verify", "--data-dir", coordDir)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("ledger ok: %d rounds verified", rounds)) {
		t.Fatalf("ledger --verify: exit %d\n%s%s", code, stdout, stderr)
	}
	// The recheck reproduces every verdict and score from the stored evidence.
	code, stdout, stderr = swarmtrain(t, "ledger", "--verify", "--recheck", "--data-dir", coordDir)
	if code != 0 || !strings.Contains(stdout, "recheck ok:") {
		t.Fatalf("ledger --verify --recheck: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("%s", stdout)
	// A coordinator that signs a wrong score passes --verify but not --recheck,
	// which names the record.
	store, err := storage.Open(coordDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head, _ := store.Head(ctx, "ledger")
	hb, _ := store.Get(ctx, head)
	rec, _, err := record.OpenBlock[record.RoundRecord](hb)
	if err != nil {
		t.Fatal(err)
	}
	rec.Entries[0].Score += 0.25
	key, err := p2p.LoadOrCreateIdentity(coordDir)
	if err != nil {
		t.Fatal(err)
	}
	resigned, err := record.Sign(key, rec)
	if err != nil {
		t.Fatal(err)
	}
	store.Put(ctx, resigned)
	store.SetHead(ctx, "ledger", resigned.Cid())
	store.Close()
	if code, _, _ := swarmtrain(t, "ledger", "--verify", "--data-dir", coordDir); code != 0 {
		t.Fatalf("a re-signed record no longer verifies: exit %d", code)
	}
	code, _, stderr = swarmtrain(t, "ledger", "--verify", "--recheck", "--data-dir", coordDir)
	if code == 0 || !strings.Contains(stderr, resigned.Cid().String()) || !strings.Contains(stderr, "score") {
		t.Fatalf("altered score: exit %d, stderr %q (want it to name %s)", code, stderr, resigned.Cid())
	}
	t.Logf("altered score: %s", strings.TrimSpace(stderr))
	// Alter one stored record's bytes: verification must fail and name it.
	if store, err = storage.Open(coordDir); err != nil {
		t.Fatal(err)
	}
	head, _ = store.Head(context.Background(), "ledger")
	b, _ := store.Get(context.Background(), head)
	raw := append([]byte(nil), b.RawData()...)
	raw[len(raw)/2] ^= 0x01
	forged, _ := blocks.NewBlockWithCid(raw, head)
	store.Blockstore().DeleteBlock(context.Background(), head)
	store.Blockstore().Put(context.Background(), forged)
	store.Close()
	code, _, stderr = swarmtrain(t, "ledger", "--verify", "--data-dir", coordDir)
	if code == 0 || !strings.Contains(stderr, head.String()) {
		t.Fatalf("altered record: exit %d, stderr %q (want it to name %s)", code, stderr, head)
	}
}
