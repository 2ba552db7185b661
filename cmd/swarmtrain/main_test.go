package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

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
	code, _, stderr := swarmtrain(t, "train", "--config", "../../examples/mnist-mlp.yaml", "--dataset-dir", empty)
	oneLine(t, code, stderr, "MNIST not found: no train-images-idx3-ubyte.gz in "+empty+" (--dataset-dir); point at a copy with --dataset-dir DIR or SWARMTRAIN_DATA=DIR (a folder holding mnist/), or fetch it: swarmtrain data get mnist --dataset-dir "+empty+" (--mirror URL names a mirror you can reach)")
	// Where SWARMTRAIN_DATA sent it, the message says so. (join loads the
	// dataset the swarm manifest names, so it reaches the swarm first.)
	t.Setenv("SWARMTRAIN_DATA", empty)
	for _, cmd := range [][]string{
		{"train", "--config", "../../examples/mnist-mlp.yaml"},
		{"start", "--config", "../../examples/mnist-mlp.yaml", "--data-dir", filepath.Join(empty, "coord")},
		{"demo"},
		{"data", "verify", "mnist"},
	} {
		code, _, stderr = swarmtrain(t, cmd...)
		oneLine(t, code, stderr, "in "+filepath.Join(empty, "mnist")+" ($SWARMTRAIN_DATA/mnist); point at a copy with --dataset-dir DIR or SWARMTRAIN_DATA=DIR")
	}
	if _, err := os.Stat(filepath.Join(empty, "coord")); !os.IsNotExist(err) {
		t.Errorf("start without MNIST created its data dir")
	}
}

// The old spellings of the dataset flag still work, with a deprecation
// notice that names the new one.
func TestDeprecatedDatasetFlags(t *testing.T) {
	empty := t.TempDir()
	for _, cmd := range [][]string{
		{"train", "--config", "../../examples/mnist-mlp.yaml", "--data-dir", empty},
		{"start", "--config", "../../examples/mnist-mlp.yaml", "--mnist-dir", empty},
		{"data", "verify", "mnist", "--dir", empty},
	} {
		// cobra prints the notice where help goes (stdout); the error names
		// the directory the alias gave.
		code, stdout, stderr := swarmtrain(t, cmd...)
		if code == 0 || !strings.Contains(stdout, "has been deprecated, use --dataset-dir") || !strings.Contains(stderr, "no train-images-idx3-ubyte.gz in "+empty) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", cmd, code, stdout, stderr)
		}
	}
}

func TestDataGetOfflineSaysHowToDoWithout(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused, as offline
	dst := t.TempDir()
	code, _, stderr := swarmtrain(t, "data", "get", "mnist", "--dataset-dir", dst, "--mirror", dead.URL+"/")
	oneLine(t, code, stderr, "without network, copy MNIST's four .gz files into "+dst+", or point SWARMTRAIN_DATA at a folder holding mnist/, or name a mirror you can reach with --mirror URL")
}

func TestVersionFromBuildInfo(t *testing.T) {
	code, stdout, _ := swarmtrain(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "swarmtrain ") || strings.Contains(stdout, " dev") || !strings.Contains(stdout, runtime.Version()) {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
}

func TestSingleLineJoinsDialErrors(t *testing.T) {
	in := "failed to dial 12D3KooW: all dials failed\n  * [/ip4/127.0.0.1/tcp/1] dial tcp4 127.0.0.1:1: connect: connection refused\n  * [/ip4/127.0.0.1/udp/1/quic-v1] timeout\n"
	want := "failed to dial 12D3KooW: all dials failed; [/ip4/127.0.0.1/tcp/1] dial tcp4 127.0.0.1:1: connect: connection refused; [/ip4/127.0.0.1/udp/1/quic-v1] timeout"
	if got := singleLine(in); got != want {
		t.Fatalf("singleLine:\n got %q\nwant %q", got, want)
	}
}

// A libp2p dial error (a line per address, the peer ID repeated) prints as
// one short reason per address.
func TestDialErrorIsOneShortLine(t *testing.T) {
	addr := ma.StringCast("/ip4/127.0.0.1/tcp/1")
	refused := &net.OpError{Op: "dial", Net: "tcp4", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	de := &swarm.DialError{Peer: "12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM", Cause: errors.New("all dials failed"),
		DialErrors: []swarm.TransportError{{Address: addr, Cause: refused}}}
	err := fmt.Errorf("--bootstrap /ip4/127.0.0.1/tcp/1/p2p/12D3KooW: failed to dial: %w", de)
	want := "--bootstrap /ip4/127.0.0.1/tcp/1/p2p/12D3KooW: failed to dial: connection refused (nothing listens there) at /ip4/127.0.0.1/tcp/1"
	if got := errorLine(err); got != want {
		t.Fatalf("errorLine:\n got %q\nwant %q", got, want)
	}
}

// join checks its arguments before it creates anything: a bad swarm ID or
// multiaddr is a one-line error and leaves no data dir behind.
func TestJoinRejectsBadArgumentsFirst(t *testing.T) {
	mnist := testdata.MNISTDir(t)
	dir := filepath.Join(t.TempDir(), "peer1")
	const swarm = "bafyreiejacv7xyvok2kwfgzmwznusi4poljptfl6jt5ceyjwn3uecvgahm"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"join", swarm, "--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, "--bootstrap /ip4/127.0.0.1/tcp/4001 is not a peer multiaddr"},
		{[]string{"join", swarm, "--bootstrap", "127.0.0.1:4001"}, "--bootstrap 127.0.0.1:4001 is not a peer multiaddr"},
		{[]string{"join", "not-a-swarm", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM"}, `swarm ID "not-a-swarm" is not a CID`},
		{[]string{"join", swarm}, "--bootstrap: give the address start printed"},
		{[]string{"join", swarm, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM", "--relay", "sometimes"}, `--relay: unknown value "sometimes" (want one of [serve use auto off])`},
		{[]string{"join", swarm, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM", "--announce", "/ip4/203.0.113.7"}, `--announce: "/ip4/203.0.113.7" needs a host and a port`},
		{[]string{"join", swarm, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM"}, "no bootstrap peer serves swarm " + swarm + ": /ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM: "},
	} {
		code, _, stderr := swarmtrain(t, append(c.args, "--data-dir", dir, "--dataset-dir", mnist)...)
		oneLine(t, code, stderr, c.want)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%v created %s", c.args, dir)
		}
	}
}

func TestExportNeedsOneSource(t *testing.T) {
	const model = "bafkreid6ce5ezktqruf4zym4ff3xyvctcgdvhrssy7fyjq26g37cty5rc4"
	code, _, stderr := swarmtrain(t, "export", model, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRpWb81BgrmLTBSNwrqsx4UTovDFHpuPR7MHSGYfH4jPM", "--data-dir", t.TempDir())
	oneLine(t, code, stderr, "give one of --bootstrap, --api or --data-dir")
	dir := filepath.Join(t.TempDir(), "nothing")
	code, _, stderr = swarmtrain(t, "export", model, "--data-dir", dir)
	oneLine(t, code, stderr, "--data-dir "+dir+" holds no node data: give the coordinator's data dir, or --bootstrap to fetch the model from a running peer")
}

func TestTrainRejectsCUDAWithoutTag(t *testing.T) {
	code, _, stderr := swarmtrain(t, "train", "--config", "../../examples/mnist-mlp.yaml", "--device", "cuda")
	oneLine(t, code, stderr, `--device: device "cuda": this swarmtrain was built without CUDA`)
}

func TestTrainRunsEndToEnd(t *testing.T) {
	dir := testdata.MNISTDir(t)
	cfg := writeFile(t, "tiny.yaml", "model: {kind: mlp, hidden: [32]}\ntrain: {epochs: 1}\n")
	code, stdout, stderr := swarmtrain(t, "train", "--config", cfg, "--dataset-dir", dir, "--limit", "3000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "epoch 1  loss") || !strings.Contains(stdout, "test accuracy") {
		t.Fatalf("no epoch line in %q", stdout)
	}
	// One epoch on 3,000 images reaches 57.6 %; chance is 10 %. 40 % says
	// it learned, with room for another build's rounding.
	m := regexp.MustCompile(`test accuracy ([0-9.]+)%`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no accuracy in %q", stdout)
	}
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 40 {
		t.Errorf("test accuracy %.2f%% after one epoch on 3,000 images, want at least 40%%", acc)
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
	code, stdout, stderr := swarmtrain(t, "data", "get", "mnist", "--dataset-dir", dst, "--mirror", broken.URL+"/", "--mirror", srv.URL+"/")
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
	code, stdout, _ = swarmtrain(t, "data", "get", "mnist", "--dataset-dir", dst, "--mirror", broken.URL+"/")
	if code != 0 || strings.Count(stdout, "present, hash ok") != 4 {
		t.Fatalf("second run: exit %d, %q", code, stdout)
	}
	if code, _, stderr := swarmtrain(t, "data", "verify", "mnist", "--dataset-dir", dst); code != 0 {
		t.Fatalf("verify: %s", stderr)
	}
}

func TestDataGetRejectsCorruptDownload(t *testing.T) {
	corrupt := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not mnist")) })
	srv := httptest.NewServer(corrupt)
	defer srv.Close()
	dst := t.TempDir()
	code, _, stderr := swarmtrain(t, "data", "get", "mnist", "--dataset-dir", dst, "--mirror", srv.URL+"/")
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
	code, _, stderr := swarmtrain(t, "data", "verify", "mnist", "--dataset-dir", dst)
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
