package config

import (
	"bytes"
	"testing"
)

// FuzzFromCanonical: a swarm manifest's config comes from the network (the
// coordinator wrote it, anyone may have); decoding it never panics, and
// what it accepts re-encodes to bytes it accepts again, the same.
func FuzzFromCanonical(f *testing.F) {
	for _, y := range []string{"", "model: {kind: cnn, channels: [8, 16], dense: 128}\n",
		"model: {kind: transformer, layers: 2, width: 64, heads: 2, context: 64}\ndata: {name: brown, kind: text, hash: 908c42b98faaf14d69a1a42ece4e4e5d5508ad0fe2b6aa3c5a16dce46ded9886, classes: 86}\n",
		"model: {kind: mlp, hidden: [32]}\ndata: {name: own, kind: idx, hash: 908c42b98faaf14d69a1a42ece4e4e5d5508ad0fe2b6aa3c5a16dce46ded9886, shape: [12, 16], classes: 3, mean: 0.28604063, std: 0.35302424}\nverify: {reference_fraction: 0.2}\n"} {
		s, err := Parse([]byte(y), "seed")
		if err != nil {
			f.Fatal(err)
		}
		b, _ := s.Canonical()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := FromCanonical(b)
		if err != nil {
			return
		}
		c1, err := s.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := FromCanonical(c1)
		if err != nil {
			t.Fatalf("re-encoded config refused: %v", err)
		}
		if c2, _ := s2.Canonical(); !bytes.Equal(c1, c2) {
			t.Fatalf("canonical form not stable:\n%s\n%s", c1, c2)
		}
	})
}
