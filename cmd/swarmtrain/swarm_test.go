package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
)

// TestStartAndJoinSayWhatHappens runs a small swarm whose quorum (3) is
// above its contributors (2) and checks what start and join tell the user
// along the way: that no round seals while nobody contributes, that no
// round is sealed yet, which swarm a peer serves when the ID is wrong, the
// second contributor's own default data dir, a held --data-dir, the
// below-quorum warning, Ctrl-C on join and on start, export from the API
// and the --events file.
func TestStartAndJoinSayWhatHappens(t *testing.T) {
	if raceEnabled {
		t.Skip("separate processes the race detector does not reach: skipped with -race")
	}
	mnist := testdata.MNISTDir(t)
	bin := builtBinary(t)
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	cfg := writeFile(t, "swarm.yaml", fmt.Sprintf(`name: say
model: {kind: mlp, hidden: [16]}
data: {dir: %s}
train: {rounds: 8, inner_steps: 5}
round: {deadline: 2s, quorum: 3, min_contributions: 1}
network: {listen: ["/ip4/127.0.0.1/tcp/0"]}
api: {listen: "127.0.0.1:0"}
`, mnist))
	events := filepath.Join(dir, "events.jsonl")
	coordDir := filepath.Join(dir, "coord")
	run := func(name string, args ...string) *proc {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "HOME="+home)
		return spawnCmd(t, c, filepath.Join(dir, name+".log"))
	}
	coord := run("start", "start", "--config", cfg, "--data-dir", coordDir, "--events", events)
	join := coord.waitLine(t, regexp.MustCompile(`^\s+\S+ join (\S+) --bootstrap (\S+) --data-dir \./peer1$`), time.Minute)
	swarm, boot := join[1], join[2]
	api := coord.waitLine(t, regexp.MustCompile(`^api: (http://\S+/v1/swarm)$`), time.Second)[1]
	coord.waitLine(t, regexp.MustCompile(`^round 0 not sealed after \d+s: it needs 1 contribution\(s\)`), 30*time.Second)

	for _, via := range [][]string{{"--bootstrap", boot}, {"--api", api}} {
		code, stdout, stderr := swarmtrain(t, append([]string{"scores", swarm}, via...)...)
		if code != 0 || stdout != "swarm "+swarm+": no round sealed yet; scores appear once round 0 is sealed\n" {
			t.Errorf("scores %s before round 0: exit %d, %q %q", via[0], code, stdout, stderr)
		}
	}
	// Another swarm's ID: at once, naming what the peer serves; no dir left.
	const other = "bafyreiejacv7xyvok2kwfgzmwznusi4poljptfl6jt5ceyjwn3uecvgahm"
	wrongDir := filepath.Join(dir, "wrong")
	start := time.Now()
	code, _, stderr := swarmtrain(t, "join", other, "--bootstrap", boot, "--data-dir", wrongDir, "--dataset-dir", mnist)
	oneLine(t, code, stderr, "no bootstrap peer serves swarm "+other+": "+boot+" serves swarm "+swarm)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a wrong swarm ID took %s to report", d)
	}
	if _, err := os.Stat(wrongDir); !os.IsNotExist(err) {
		t.Errorf("a failed join left %s", wrongDir)
	}

	// Two contributors without --data-dir: the second takes contributor-2.
	first := filepath.Join(home, ".swarmtrain", "contributor")
	c1 := run("c1", "join", swarm, "--bootstrap", boot, "--dataset-dir", mnist)
	c1.waitLine(t, regexp.MustCompile(`^joined swarm `+swarm), time.Minute)
	// Pasting a held --data-dir says which one to use instead (checked
	// while contributor 1 surely still runs: under load it could otherwise
	// finish every round before this line).
	code, _, stderr = swarmtrain(t, "join", swarm, "--bootstrap", boot, "--data-dir", first, "--dataset-dir", mnist)
	oneLine(t, code, stderr, "--data-dir "+first+" is in use by another running swarmtrain: give each contributor on this machine its own, e.g. --data-dir "+first+"-2")
	c2 := run("c2", "join", swarm, "--bootstrap", boot, "--dataset-dir", mnist)
	c2.waitLine(t, regexp.MustCompile(`^data dir `+regexp.QuoteMeta(first+"-2 ("+first+" is in use by another contributor on this machine)")), time.Minute)
	c2.waitLine(t, regexp.MustCompile(`^joined swarm `+swarm), time.Minute)
	// A running coordinator's dir: export says to fetch from the swarm.
	code, _, stderr = swarmtrain(t, "export", other, "--data-dir", coordDir)
	oneLine(t, code, stderr, "--data-dir "+coordDir+" is in use by a running node: export from the live swarm with --bootstrap MULTIADDR or --api URL")
	code, _, stderr = swarmtrain(t, "ledger", "--verify", "--data-dir", coordDir)
	oneLine(t, code, stderr, "--data-dir "+coordDir+" is in use by a running node: copy the ledger from the live swarm with --bootstrap MULTIADDR")

	// Ctrl-C on a contributor after a round: exit 0, one line on what is kept.
	c1.waitLine(t, regexp.MustCompile(`^applied round 0: `), time.Minute)
	c1.cmd.Process.Signal(syscall.SIGINT)
	if err := c1.wait(t, 30*time.Second); err != nil {
		t.Fatalf("join after Ctrl-C: %v, want exit 0", err)
	}
	if out := c1.output(); !regexp.MustCompile(`(?m)^interrupted: took part in rounds 0 to \d+ of swarm ` + swarm + `; identity and blocks saved in ` + regexp.QuoteMeta(first) + ` \(join again with --data-dir`).MatchString(out) {
		t.Errorf("join's output after Ctrl-C:\n%s", out)
	}

	final := coord.waitLine(t, regexp.MustCompile(`^final model (\S+); export it with: \S+ export (\S+) -o model\.safetensors --bootstrap (\S+)$`), 3*time.Minute)
	if final[1] != final[2] || final[3] != boot {
		t.Errorf("final model line: %q", final[0])
	}
	out := filepath.Join(dir, "model.safetensors")
	code, stdout, stderr := swarmtrain(t, "export", final[1], "-o", out, "--api", api)
	if code != 0 || !strings.HasPrefix(stdout, "wrote "+out+" (") {
		t.Fatalf("export --api: exit %d, %q %q", code, stdout, stderr)
	}
	if err := c2.wait(t, time.Minute); err != nil {
		t.Errorf("contributor 2: %v, want exit 0 after the last round", err)
	}
	coord.cmd.Process.Signal(syscall.SIGINT)
	if err := coord.wait(t, 30*time.Second); err != nil {
		t.Fatalf("start after Ctrl-C: %v, want exit 0", err)
	}
	lines := strings.Split(coord.output(), "\n")
	if last := lines[len(lines)-1]; last != "stopped: swarm "+swarm+" sealed all 8 rounds; ledger and models saved in "+coordDir+" (final model "+final[1]+")" {
		t.Errorf("start's last line after Ctrl-C: %q", last)
	}
	// Every block of the ledger is linked from its head: the walk a
	// recursive IPFS pin makes reaches the final model, and nothing the
	// ledger links is missing from the coordinator's store.
	code, stdout, stderr = swarmtrain(t, "ledger", "--verify", "--refs", "--data-dir", coordDir)
	if code != 0 || !regexp.MustCompile(`(?m)^refs: \d+ blocks reachable from head \S+ \(what .ipfs pin add --recursive \S+. pins\), 0 linked but not in this store:$`).MatchString(stdout) ||
		!regexp.MustCompile(`(?m)^`+final[1]+`$`).MatchString(stdout) {
		t.Errorf("ledger --verify --refs: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("%s", regexp.MustCompile(`(?m)^refs: .*$`).FindString(stdout))
	// Rounds sealed below the quorum waited for their deadline: one warning.
	logb, _ := os.ReadFile(filepath.Join(dir, "start.log"))
	if n := strings.Count(string(logb), "fewer than round.quorum 3: every round will wait the full deadline"); n != 1 {
		t.Errorf("%d below-quorum warnings in start's log, want 1:\n%s", n, logb)
	}
	checkEvents(t, events, swarm, final[1], 8)
}

// checkEvents reads a start --events file and checks its sequence: ready,
// one round_sealed per round with CIDs, done with the final model, stopped
// without error.
func checkEvents(t *testing.T, path, swarm, model string, rounds int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var types []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev anyEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events: %v in %q", err, sc.Text())
		}
		types = append(types, ev.Type)
		switch ev.Type {
		case "ready":
			if ev.Ready.Swarm != swarm || len(ev.Ready.Addrs) == 0 || ev.Ready.API == "" {
				t.Errorf("ready event %s", sc.Text())
			}
		case "round_sealed":
			s := ev.Sealed
			if _, err := cid.Decode(s.Model); err != nil || s.Accepted < 1 || s.TestAccuracy <= 0 || s.BytesIn <= 0 {
				t.Errorf("round_sealed event %s", sc.Text())
			}
			if _, err := cid.Decode(s.Record); err != nil {
				t.Errorf("round_sealed event %s: record %v", sc.Text(), err)
			}
		case "done":
			if ev.Done.Swarm != swarm || ev.Done.Model != model || ev.Done.Rounds != rounds {
				t.Errorf("done event %s", sc.Text())
			}
		case "stopped":
			if ev.Stopped.Error != "" {
				t.Errorf("stopped event %s", sc.Text())
			}
		}
	}
	want := "ready " + strings.Repeat("round_sealed ", rounds) + "done stopped"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events: %s, want %s", got, want)
	}
}

// A start that fails before its swarm is up leaves no data dir with a key.
func TestFailedStartLeavesNoDataDir(t *testing.T) {
	mnist := testdata.MNISTDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := writeFile(t, "swarm.yaml", fmt.Sprintf("model: {kind: mlp, hidden: [16]}\nnetwork: {listen: [\"/ip4/127.0.0.1/tcp/0\"]}\napi: {listen: %q}\n", busy.Addr().String()))
	dir := filepath.Join(t.TempDir(), "coord")
	code, _, stderr := swarmtrain(t, "start", "--config", cfg, "--data-dir", dir, "--dataset-dir", mnist)
	oneLine(t, code, stderr, "api.listen "+busy.Addr().String())
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed start left %s", dir)
	}
	// A dir that held a node before is never touched.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644)
	swarmtrain(t, "start", "--config", cfg, "--data-dir", dir, "--dataset-dir", mnist)
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Errorf("a failed start removed what was in %s before: %v", dir, err)
	}
}
