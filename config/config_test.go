package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultsAreValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 2 {
		t.Fatalf("found %d example configs, want mnist-mlp and mnist-cnn", len(files))
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestEmptyFileIsAllDefaults(t *testing.T) {
	s, err := Parse(nil, "empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.BatchSize != Default().Train.BatchSize {
		t.Fatalf("batch size %d", s.Train.BatchSize)
	}
}

func TestErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"train:\n  inner_optimizer:\n    lrr: 0.1\n",
			`swarm.yaml:3: unknown field "lrr" in train.inner_optimizer`},
		{"train:\n  outer_optimizer: {name: nesterov, lr: 0.7, momentun: 0.9}\n",
			`swarm.yaml:2: unknown field "momentun" in train.outer_optimizer`},
		{"api: {listen: \"\", port: 8080}\n", `swarm.yaml:1: unknown field "port" in api`},
		{"modle:\n  kind: mlp\n", `swarm.yaml:1: unknown field "modle" in the top level`},
		{"train:\n  inner_optimizer: {name: adam, lr: -0.1}\n",
			"swarm.yaml: train.inner_optimizer.lr: must be > 0, got -0.1"},
		{"compression: {codec: zstd}\n",
			`swarm.yaml: compression.codec: unknown value "zstd" (want one of [dense fp16 int8 topk topk+int8 topk+fp16 topk+int2])`},
		{"compression: {density: 0.05, min_density: 0.1}\n",
			"swarm.yaml: compression.min_density: must be in (0, compression.density=0.05], or 0 for off, got 0.1"},
		{"compression: {min_density: -0.01}\n",
			"swarm.yaml: compression.min_density: must be in (0, compression.density=0.01], or 0 for off, got -0.01"},
		{"round: {deadline: soon}\n", `swarm.yaml:1: "soon" is not a duration (write e.g. 30s or 2m)`},
		{"train: {batch_size: many}\n", "swarm.yaml:1: cannot unmarshal !!str `many` into int"},
		{"network: {listen: [\"tcp/1\"]}\n", `swarm.yaml: network.listen[0]: "tcp/1" is not a multiaddr`},
		{"network: {relay: always}\n", `swarm.yaml: network.relay: unknown value "always" (want one of [serve use auto off])`},
		{"network: {announce: [\"/ip4/203.0.113.7\"]}\n", `swarm.yaml: network.announce[0]: "/ip4/203.0.113.7" needs a host and a port`},
		{"network: {announce: [\"/udp/4001/quic-v1\"]}\n", `swarm.yaml: network.announce[0]: "/udp/4001/quic-v1" must start with /ip4, /ip6 or /dns`},
		{"network: {announce: [\"/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp\"]}\n", `swarm.yaml: network.announce[0]: "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp" names a peer or a relay`},
		{"network: {announce: [\"/ip4/203.0.113.7/ws\"]}\n", `swarm.yaml: network.announce[0]: "/ip4/203.0.113.7/ws" needs a /tcp/PORT or /udp/PORT/quic-v1 after the host`},
		{"model: {kind: cnn, channels: [8], dense: 10}\n", "swarm.yaml: model.channels: a cnn needs 2 convolution widths, got 1"},
		{"data: {name: own, kind: idx, hash: 908c42b98faaf14d69a1a42ece4e4e5d5508ad0fe2b6aa3c5a16dce46ded9886, shape: [12, 16], classes: 3}\n", "swarm.yaml: data.std: required for an idx dataset"},
		{"data: {name: own, kind: idx, hash: 908c42b98faaf14d69a1a42ece4e4e5d5508ad0fe2b6aa3c5a16dce46ded9886, shape: [12, 16], classes: 3, mean: 1.5, std: 0.3}\n", "swarm.yaml: data.mean: the training pixels' mean, in [0, 1], got 1.5"},
		{"data: {name: mnist, std: 0.3}\n", "swarm.yaml: data.std: only an idx dataset is normalised by the config (mnist's is fixed)"},
		{"round: {quorum: 2, min_contributions: 3}\n", "swarm.yaml: round.min_contributions: must be in [1, round.quorum=2], got 3"},
		{"round: {overlap: true}\ncompression: {codec: dense}\n", `swarm.yaml: round.overlap: needs a sparse codec (topk, topk+int8, topk+fp16, topk+int2), got compression.codec "dense"`},
		{"round: {overlap: true}\ncompression: {codec: int8}\n", `swarm.yaml: round.overlap: needs a sparse codec`},
		{"verify: {peer_audits: true}\n", "swarm.yaml: verify.peer_audits: needs verify.audits >= 1 (contributions must commit to their state), got 0"},
		{"round: {overlap: true}\ncompression: {codec: topk}\nverify: {audits: 1, peer_audits: true}\n", "swarm.yaml: round.overlap: cannot be used with verify.peer_audits yet"},
		{"verify: {audit_tolerance: 0.5}\n", "swarm.yaml: verify.audit_tolerance: must be in [0, 0.1], got 0.5"},
	} {
		_, err := Parse([]byte(tc.yaml), "swarm.yaml")
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.yaml, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got  %q\n want %q (one line)", tc.yaml, err, tc.want)
		}
	}
}

func TestCanonicalRoundTripsAndLeavesOutLocalFields(t *testing.T) {
	a := Default()
	a.Data.Dir = "/home/me/data"
	a.Network.Listen = []string{"/ip4/127.0.0.1/tcp/4001"}
	ca, err := a.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ca), "/home/me") || strings.Contains(string(ca), "4001") {
		t.Fatalf("canonical form carries machine-local fields: %s", ca)
	}
	cb, _ := Default().Canonical()
	if string(ca) != string(cb) {
		t.Fatalf("machine-local fields changed the canonical form:\n%s\n%s", ca, cb)
	}
	back, err := FromCanonical(ca)
	if err != nil {
		t.Fatal(err)
	}
	if back.Round.Deadline != a.Round.Deadline || back.Compression != a.Compression {
		t.Fatalf("round trip changed the config: %+v", back)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("got %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestOverlapIsCanonical: round.overlap changes what every peer accepts, so
// it is in the canonical form (two swarms differing only in it have
// different IDs), and left out when off (swarm IDs made before it existed
// are unchanged).
func TestOverlapIsCanonical(t *testing.T) {
	off, err := Default().Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(off), "overlap") {
		t.Fatalf("canonical form without overlap names it: %s", off)
	}
	s, err := Parse([]byte("round: {overlap: true}\ncompression: {codec: topk+int2, density: 0.01}\n"), "swarm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	on, err := s.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromCanonical(on)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Round.Overlap || !strings.Contains(string(on), `"overlap":true`) {
		t.Fatalf("overlap lost in the canonical form: %s", on)
	}
}
