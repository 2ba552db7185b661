package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// swarmtrain runs the CLI in-process and returns exit code, stdout, stderr.
func swarmtrain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// oneLine asserts a failure printed exactly one line naming what is wrong.
func oneLine(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("exit 0, want failure with %q", want)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q, want one line containing %q", stderr, want)
	}
}

func TestTrainRejectsMisspelledField(t *testing.T) {
	cfg := writeFile(t, "swarm.yaml", "name: x\ntrain:\n  batch_szie: 32\n")
	code, _, stderr := swarmtrain(t, "train", "--config", cfg)
	oneLine(t, code, stderr, cfg+`:3: unknown field "batch_szie" in train`)
}

func TestTrainRejectsNegativeLearningRate(t *testing.T) {
	cfg := writeFile(t, "swarm.yaml", "train:\n  inner_optimizer: {name: sgd, lr: -0.5}\n")
	code, _, stderr := swarmtrain(t, "train", "--config", cfg)
	oneLine(t, code, stderr, "train.inner_optimizer.lr: must be > 0, got -0.5")
}

func TestTrainSaysWhereMNISTIsMissing(t *testing.T) {
	empty := t.TempDir()
	code, _, stderr := swarmtrain(t, "train", "--config", "../../examples/mnist-mlp.yaml", "--data-dir", empty)
	oneLine(t, code, stderr, "MNIST not found: no train-images-idx3-ubyte.gz in "+empty+"; fetch it with: swarmtrain data get mnist --dir "+empty)
}

func TestTrainRejectsCUDAWithoutTag(t *testing.T) {
	code, _, stderr := swarmtrain(t, "train", "--config", "../../examples/mnist-mlp.yaml", "--device", "cuda")
	oneLine(t, code, stderr, `--device: device "cuda": this swarmtrain was built without CUDA`)
}

func TestTrainRunsEndToEnd(t *testing.T) {
	dir := testdata.MNISTDir(t)
	cfg := writeFile(t, "tiny.yaml", "model: {kind: mlp, hidden: [32]}\ntrain: {epochs: 1}\n")
	code, stdout, stderr := swarmtrain(t, "train", "--config", cfg, "--data-dir", dir, "--limit", "3000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "epoch 1  loss") || !strings.Contains(stdout, "test accuracy") {
		t.Fatalf("no epoch line in %q", stdout)
	}
}

func TestDataGetFetchesAndVerifies(t *testing.T) {
	src := testdata.MNISTDir(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(src)))
	defer srv.Close()
	// The first mirror is broken (404s); the fetcher must fall back.
	broken := httptest.NewServer(http.NotFoundHandler())
	defer broken.Close()
	dst := filepath.Join(t.TempDir(), "mnist")
	code, stdout, stderr := swarmtrain(t, "data", "get", "mnist", "--dir", dst, "--mirror", broken.URL+"/", "--mirror", srv.URL+"/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range data.MNISTFiles() {
		if err := data.VerifyFile(filepath.Join(dst, f.Name), f.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(stdout, "MNIST ready in "+dst) {
		t.Fatalf("stdout %q", stdout)
	}
	// A second run keeps the valid files and downloads nothing.
	code, stdout, _ = swarmtrain(t, "data", "get", "mnist", "--dir", dst, "--mirror", broken.URL+"/")
	if code != 0 || strings.Count(stdout, "present, hash ok") != 4 {
		t.Fatalf("second run: exit %d, %q", code, stdout)
	}
	if code, _, stderr := swarmtrain(t, "data", "verify", "mnist", "--dir", dst); code != 0 {
		t.Fatalf("verify: %s", stderr)
	}
}

func TestDataGetRejectsCorruptDownload(t *testing.T) {
	corrupt := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not mnist")) })
	srv := httptest.NewServer(corrupt)
	defer srv.Close()
	dst := t.TempDir()
	code, _, stderr := swarmtrain(t, "data", "get", "mnist", "--dir", dst, "--mirror", srv.URL+"/")
	oneLine(t, code, stderr, "train-images-idx3-ubyte.gz from "+srv.URL+"/train-images-idx3-ubyte.gz: SHA-256 is ")
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Fatalf("a corrupt download left files behind: %v", entries)
	}
}

func TestDataVerifyNamesCorruptFile(t *testing.T) {
	src := testdata.MNISTDir(t)
	dst := t.TempDir()
	for _, f := range data.MNISTFiles() {
		b, err := os.ReadFile(filepath.Join(src, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == "t10k-labels-idx1-ubyte.gz" {
			b[len(b)/2] ^= 0xff
		}
		os.WriteFile(filepath.Join(dst, f.Name), b, 0o644)
	}
	code, _, stderr := swarmtrain(t, "data", "verify", "mnist", "--dir", dst)
	oneLine(t, code, stderr, filepath.Join(dst, "t10k-labels-idx1-ubyte.gz")+": SHA-256 is ")
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"train", "--help"}, {"data", "get", "--help"}, {"version"}} {
		if code, stdout, stderr := swarmtrain(t, args...); code != 0 || stdout == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestLedgerRefusesADirWithoutNodeData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-a-node")
	code, _, stderr := swarmtrain(t, "ledger", "--verify", "--recheck", "--data-dir", dir)
	oneLine(t, code, stderr, "--data-dir "+dir+" holds no node data")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("ledger created %s", dir)
	}
	code, _, stderr = swarmtrain(t, "ledger", "--verify", "--data-dir", dir, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM")
	oneLine(t, code, stderr, "give --data-dir or --bootstrap, not both")
	code, _, stderr = swarmtrain(t, "scores", "--peer", "12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM")
	oneLine(t, code, stderr, "say where to read the scores")
}
