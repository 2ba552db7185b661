package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
)

// interopEnv set to "required" (CI sets it) turns a missing PyTorch from a
// skip into a failure: CI installs python3-torch, so a skip there would
// hide a broken install.
const interopEnv = "SWARMTRAIN_INTEROP"

// torchPython returns a python that imports torch and numpy: $SWARMTRAIN_PYTHON,
// Debian's /usr/bin/python3 (python3-torch installs there; a pyenv python3
// earlier on PATH usually lacks it), or python3 on PATH.
func torchPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, py := range []string{os.Getenv("SWARMTRAIN_PYTHON"), "/usr/bin/python3", "python3"} {
		if py == "" {
			continue
		}
		tried = append(tried, py)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := exec.CommandContext(ctx, py, "-c", "import torch, numpy").Run()
		cancel()
		if err == nil {
			return py
		}
	}
	msg := fmt.Sprintf("no python that imports torch and numpy (tried %s): apt-get install python3-torch python3-numpy, or set SWARMTRAIN_PYTHON", strings.Join(tried, ", "))
	if os.Getenv(interopEnv) == "required" {
		t.Fatalf("%s (%s=required)", msg, interopEnv)
	}
	t.Skip(msg)
	return ""
}

// loaderResult is examples/python/load_checkpoint.py's --json line.
type loaderResult struct {
	Samples       int     `json:"samples"`
	Correct       int     `json:"correct"`
	Loss          float64 `json:"loss"`
	BPC           float64 `json:"bits_per_char"`
	ModuleMatches bool    `json:"module_matches_metadata"`
}

// runLoader evaluates a checkpoint with the example loader in PyTorch.
func runLoader(t *testing.T, py, file, dataDir string, limit int) loaderResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	script, err := filepath.Abs("../../examples/python/load_checkpoint.py")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	c := exec.CommandContext(ctx, py, script, file, "--data", dataDir, "--limit", strconv.Itoa(limit), "--json")
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("load_checkpoint.py %s: %v\n%s%s", file, err, out, stderr.Bytes())
	}
	var r loaderResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("load_checkpoint.py printed %q: %v", out, err)
	}
	if !r.ModuleMatches {
		t.Errorf("%s: torch prints the module differently from swarmtrain.module", file)
	}
	return r
}

// checkpointMeta decodes a checkpoint file's metadata.
func checkpointMeta(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, meta, err := safetensors.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

// TestPyTorchReproducesSwarmModel runs a small swarm (a coordinator and a
// contributor, as separate processes), exports its final model from the
// live swarm and from the stopped coordinator's data dir, and loads the
// export in PyTorch with load_state_dict(strict=True) and no mapping: the
// count of correct test predictions must be exactly the coordinator's.
func TestPyTorchReproducesSwarmModel(t *testing.T) {
	if raceEnabled {
		t.Skip("separate processes the race detector does not reach: skipped with -race")
	}
	if testing.Short() {
		t.Skip("a swarm and PyTorch, about 30 s: make test-long runs it")
	}
	py := torchPython(t)
	mnist := testdata.MNISTDir(t)
	bin := builtBinary(t)
	dir := t.TempDir()
	cfg := writeFile(t, "swarm.yaml", fmt.Sprintf(`name: torch-interop
model: {kind: mlp, hidden: [32]}
data: {dir: %s}
train: {rounds: 3, inner_steps: 20}
compression: {codec: dense}
round: {deadline: 20s, quorum: 1, min_contributions: 1}
network: {listen: ["/ip4/127.0.0.1/tcp/0"]}
api: {listen: "127.0.0.1:0"}
`, mnist))
	events := filepath.Join(dir, "events.jsonl")
	coordDir := filepath.Join(dir, "coord")
	coord := spawnCmd(t, exec.Command(bin, "start", "--config", cfg, "--data-dir", coordDir, "--events", events), filepath.Join(dir, "start.log"))
	join := coord.waitLine(t, regexp.MustCompile(`^\s+\S+ join (\S+) --bootstrap (\S+) --data-dir \./peer1$`), time.Minute)
	swarm, boot := join[1], join[2]
	peer := spawnCmd(t, exec.Command(bin, "join", swarm, "--bootstrap", boot, "--data-dir", filepath.Join(dir, "peer1"), "--dataset-dir", mnist), filepath.Join(dir, "join.log"))
	final := coord.waitLine(t, regexp.MustCompile(`^final model (\S+);`), 5*time.Minute)[1]

	live := filepath.Join(dir, "live.safetensors")
	code, stdout, stderr := swarmtrain(t, "export", final, "-o", live, "--bootstrap", boot, "--dataset-dir", mnist)
	if code != 0 {
		t.Fatalf("export --bootstrap: exit %d, %s%s", code, stdout, stderr)
	}
	t.Log(strings.TrimSpace(stdout))
	if err := peer.wait(t, time.Minute); err != nil {
		t.Errorf("contributor: %v, want exit 0 after the last round", err)
	}
	coord.cmd.Process.Signal(syscall.SIGINT)
	if err := coord.wait(t, 30*time.Second); err != nil {
		t.Fatalf("start after Ctrl-C: %v", err)
	}
	stored := filepath.Join(dir, "stored.safetensors")
	if code, stdout, stderr := swarmtrain(t, "export", final, "-o", stored, "--data-dir", coordDir, "--raw"); code != 0 {
		t.Fatalf("export --raw: exit %d, %s%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(stored); true {
		if c, err := storage.FileCID(b); err != nil || c.String() != final {
			t.Errorf("export --raw hashes to %v (%v), want %s", c, err, final)
		}
	}
	local := filepath.Join(dir, "local.safetensors")
	if code, stdout, stderr := swarmtrain(t, "export", final, "-o", local, "--data-dir", coordDir, "--dataset-dir", mnist); code != 0 {
		t.Fatalf("export --data-dir: exit %d, %s%s", code, stdout, stderr)
	}
	lb, _ := os.ReadFile(live)
	db, _ := os.ReadFile(local)
	if !bytes.Equal(lb, db) {
		t.Errorf("the export from the live swarm and from the data dir differ")
	}

	// The coordinator's own figures for the last round.
	last := lastSealed(t, events)
	meta := checkpointMeta(t, local)
	wantCorrect := int(math.Round(last.TestAccuracy * 10000))
	for k, want := range map[string]string{
		round.MetaSwarm:       swarm,
		round.MetaName:        "torch-interop",
		round.MetaRound:       strconv.FormatInt(last.Round, 10),
		round.MetaRecord:      last.Record,
		round.MetaModelCID:    final,
		round.MetaTestSamples: "10000",
		round.MetaTestCorrect: strconv.Itoa(wantCorrect),
		round.MetaLayout:      "torch/1",
	} {
		if meta[k] != want {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], want)
		}
	}
	if !strings.Contains(meta[round.MetaConfig], `"torch-interop"`) {
		t.Errorf("metadata %s = %q, want the canonical config", round.MetaConfig, meta[round.MetaConfig])
	}
	r := runLoader(t, py, local, mnist, 0)
	t.Logf("PyTorch: %d/%d correct, loss %.6f; coordinator: %.2f %% (%d), test loss %.6f", r.Correct, r.Samples, r.Loss, 100*last.TestAccuracy, wantCorrect, last.TestLoss)
	if r.Samples != 10000 || r.Correct != wantCorrect {
		t.Errorf("PyTorch counts %d/%d correct, the coordinator %d/10000", r.Correct, r.Samples, wantCorrect)
	}
	if math.Abs(r.Loss-last.TestLoss) > 1e-4 {
		t.Errorf("PyTorch's test loss %.6f, the coordinator's %.6f", r.Loss, last.TestLoss)
	}
}

// lastSealed is the last round_sealed event of a start --events file.
func lastSealed(t *testing.T, path string) roundSealedEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last roundSealedEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev anyEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("events: %v in %q", err, sc.Text())
		}
		if ev.Type == "round_sealed" {
			last = ev.Sealed
		}
	}
	if last.Record == "" {
		t.Fatal("no round_sealed event")
	}
	return last
}

// TestPyTorchReproducesTrainOutput: train --output writes a cnn checkpoint
// that PyTorch loads strict and scores exactly as train did.
func TestPyTorchReproducesTrainOutput(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("training a cnn and PyTorch, about 15 s: make test-long runs it")
	}
	py := torchPython(t)
	mnist := testdata.MNISTDir(t)
	cfg := writeFile(t, "cnn.yaml", "name: torch-cnn\nmodel: {kind: cnn, channels: [4, 8], dense: 32}\ntrain: {epochs: 1, batch_size: 64}\n")
	out := filepath.Join(t.TempDir(), "cnn.safetensors")
	const limit = 2000
	code, stdout, stderr := swarmtrain(t, "train", "--config", cfg, "--dataset-dir", mnist, "--limit", strconv.Itoa(limit), "--output", out)
	if code != 0 {
		t.Fatalf("train --output: exit %d, %s%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`test accuracy ([0-9.]+)%`).FindStringSubmatch(stdout)
	if m == nil || !strings.Contains(stdout, "wrote "+out) {
		t.Fatalf("train printed:\n%s", stdout)
	}
	pct, _ := strconv.ParseFloat(m[1], 64)
	meta := checkpointMeta(t, out)
	correct, _ := strconv.Atoi(meta[round.MetaTestCorrect])
	if meta[round.MetaTestSamples] != strconv.Itoa(limit) || math.Abs(100*float64(correct)/limit-pct) > 0.005 || meta[round.MetaSwarm] != "" {
		t.Errorf("metadata %v against train's %s%%", meta, m[1])
	}
	r := runLoader(t, py, out, mnist, limit)
	t.Logf("PyTorch: %d/%d correct, loss %.6f; train: %s%% (%d)", r.Correct, r.Samples, r.Loss, m[1], correct)
	if r.Samples != limit || r.Correct != correct {
		t.Errorf("PyTorch counts %d/%d correct, train %d/%d", r.Correct, r.Samples, correct, limit)
	}
	// A path in no directory fails before any training.
	code, _, stderr = swarmtrain(t, "train", "--config", cfg, "--dataset-dir", mnist, "--output", filepath.Join(out, "nodir", "x"))
	oneLine(t, code, stderr, "--output "+filepath.Join(out, "nodir", "x"))
}

// trainOutput runs train --output with cfg and returns the checkpoint's
// test figures from its metadata, with what train printed.
func trainOutput(t *testing.T, cfg, out string, args ...string) (round.Metric, string) {
	t.Helper()
	code, stdout, stderr := swarmtrain(t, append([]string{"train", "--config", cfg, "--output", out}, args...)...)
	if code != 0 || !strings.Contains(stdout, "wrote "+out) {
		t.Fatalf("train --output: exit %d, %s%s", code, stdout, stderr)
	}
	meta := checkpointMeta(t, out)
	var m round.Metric
	m.Samples, _ = strconv.Atoi(meta[round.MetaTestSamples])
	m.Correct, _ = strconv.Atoi(meta[round.MetaTestCorrect])
	m.Loss, _ = strconv.ParseFloat(meta[round.MetaTestLoss], 64)
	return m, stdout
}

// TestPyTorchReproducesOwnModels: the loader builds what the metadata
// describes for any dataset, not only MNIST's shapes: an own IDX set (12x16,
// 3 classes, its own pinned normalisation) and a text set's transformer,
// both from train --output, each scored in PyTorch as swarmtrain scored
// it.
func TestPyTorchReproducesOwnModels(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("training two small models and PyTorch, about 10 s: make test-long runs it")
	}
	py := torchPython(t)

	idxDir := t.TempDir()
	writeOwnIDX(t, idxDir, 600, 300)
	cfg := ownConfig(t, idxDir, "{kind: cnn, channels: [4, 8], dense: 16}", "train: {epochs: 2, batch_size: 32}\n")
	out := filepath.Join(t.TempDir(), "own.safetensors")
	m, _ := trainOutput(t, cfg, out)
	meta := checkpointMeta(t, out)
	var input struct{ Mean, Std float64 }
	json.Unmarshal([]byte(meta[round.MetaInput]), &input)
	if input.Mean == 0 || input.Mean == 0.1307 || input.Std == 0.3081 {
		t.Errorf("own IDX checkpoint's input %s: want the dataset's pinned normalisation, not MNIST's", meta[round.MetaInput])
	}
	r := runLoader(t, py, out, idxDir, 0)
	t.Logf("own IDX cnn: PyTorch %d/%d correct, loss %.6f; train %d/%d, loss %.6f", r.Correct, r.Samples, r.Loss, m.Correct, m.Samples, m.Loss)
	if r.Samples != 300 || m.Samples != 300 || r.Correct != m.Correct || math.Abs(r.Loss-m.Loss) > 1e-4 {
		t.Errorf("PyTorch: %d/%d correct, loss %.6f; train: %d/%d, loss %.6f", r.Correct, r.Samples, r.Loss, m.Correct, m.Samples, m.Loss)
	}

	textDir := wordCorpus(t)
	code, hash, stderr := swarmtrain(t, "data", "hash", textDir)
	if code != 0 {
		t.Fatalf("data hash: %s", stderr)
	}
	cfg = writeFile(t, "text.yaml", fmt.Sprintf("name: text\nmodel: {kind: transformer, layers: 2, width: 32, heads: 2, context: 16}\n%s  dir: %s\n  held_out: 0.2\ntrain: {epochs: 1, steps_per_epoch: 100, batch_size: 16, inner_optimizer: {name: adam, lr: 0.003, beta1: 0.9, beta2: 0.99, eps: 1.0e-8}}\n",
		strings.SplitN(hash, "#", 2)[0], textDir))
	out = filepath.Join(t.TempDir(), "text.safetensors")
	m, printed := trainOutput(t, cfg, out)
	bpc := regexp.MustCompile(`held-out (\S+) bits/char`).FindStringSubmatch(printed)
	r = runLoader(t, py, out, textDir, 0)
	t.Logf("transformer: PyTorch %d/%d characters predicted, %.5f bits/char; train %d/%d, %.5f bits/char (printed %v)", r.Correct, r.Samples, r.BPC, m.Correct, m.Samples, m.Loss/math.Ln2, bpc)
	if r.Samples == 0 || r.Samples != m.Samples || r.Correct != m.Correct || math.Abs(r.BPC-m.Loss/math.Ln2) > 1e-4 {
		t.Errorf("PyTorch: %d/%d, %.6f bits/char; train: %d/%d, %.6f bits/char", r.Correct, r.Samples, r.BPC, m.Correct, m.Samples, m.Loss/math.Ln2)
	}
}
