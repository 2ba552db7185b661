package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
)

func TestLoadMNIST(t *testing.T) {
	tr, te, err := LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if tr.N != 60000 || te.N != 10000 || tr.Dim() != 784 || len(tr.Pix) != 60000*784 || tr.X != nil {
		t.Fatalf("sizes: train %d test %d dim %d (held as %d bytes)", tr.N, te.N, tr.Dim(), len(tr.Pix))
	}
	var sum float64
	row := make([]float32, 784)
	for i := 0; i < tr.N; i++ {
		tr.Fill(row, i)
		for _, v := range row {
			sum += float64(v)
		}
	}
	if mean := sum / float64(len(tr.Pix)); mean > 0.01 || mean < -0.01 {
		t.Fatalf("normalised training mean %v, want ~0", mean)
	}
	if tr.Y[0] != 5 || te.Y[0] != 7 { // MNIST's first labels
		t.Fatalf("first labels %d %d", tr.Y[0], te.Y[0])
	}
}

func TestMissingDataSaysWhereAndHow(t *testing.T) {
	dir := t.TempDir()
	_, _, err := LoadMNIST(dir)
	var me *MissingError
	if !errors.As(err, &me) || me.Dir != dir {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "swarmtrain data get mnist --dir "+dir) {
		t.Fatalf("message does not say how to fetch: %v", err)
	}
}

func writeGz(t *testing.T, path string, b []byte) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadIDXRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", []byte{1, 2, 3, 4}, "not an IDX file"},
		{"dims", []byte{0, 0, 8, 9}, "has 9 dimensions"},
		{"truncated", []byte{0, 0, 8, 1, 0, 0, 0, 10, 1, 2}, "truncated: header declares 10 bytes"},
		{"huge", []byte{0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "exceed"},
		{"zero", []byte{0, 0, 8, 1, 0, 0, 0, 0}, "empty"},
	} {
		p := filepath.Join(dir, tc.name+".gz")
		writeGz(t, p, tc.b)
		_, err := readIDX(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, want an error naming the file and containing %q", tc.name, err, tc.want)
		}
	}
	raw := filepath.Join(dir, "ok")
	os.WriteFile(raw, []byte{0, 0, 8, 1, 0, 0, 0, 2, 7, 9}, 0o644)
	if x, err := readIDX(raw); err != nil || !bytes.Equal(x.data, []byte{7, 9}) {
		t.Fatalf("raw IDX: %v %v", x, err)
	}
}

func TestAssignIsDeterministicDistinctAndInRange(t *testing.T) {
	a := Assign(42, "peerA", 60000, 2000)
	if !slices.Equal(a, Assign(42, "peerA", 60000, 2000)) {
		t.Fatal("same seed and peer gave different shards")
	}
	if slices.Equal(a, Assign(42, "peerB", 60000, 2000)) || slices.Equal(a, Assign(43, "peerA", 60000, 2000)) {
		t.Fatal("another peer or round got the same shard")
	}
	seen := map[int]bool{}
	for _, i := range a {
		if i < 0 || i >= 60000 || seen[i] {
			t.Fatalf("index %d out of range or repeated", i)
		}
		seen[i] = true
	}
	if len(a) != 2000 || len(Assign(1, "p", 10, 50)) != 10 || Assign(1, "p", 10, 0) != nil {
		t.Fatal("shard sizes wrong")
	}
	// Pin the algorithm: a change here silently breaks every recorded shard.
	if got := Assign(1, "12D3KooWtest", 60000, 3); !slices.Equal(got, pinnedAssign) {
		t.Fatalf("Assign(1, 12D3KooWtest) = %v; the shard algorithm changed (was %v)", got, pinnedAssign)
	}
}

var pinnedAssign = []int{14063, 25996, 1696}

func TestSubsetAndHead(t *testing.T) {
	s := &Set{X: []float32{0, 0, 1, 1, 2, 2}, Y: []uint8{0, 1, 2}, N: 3, Rows: 1, Cols: 2}
	sub := s.Subset([]int{2, 0})
	if !slices.Equal(sub.X, []float32{2, 2, 0, 0}) || !slices.Equal(sub.Y, []uint8{2, 0}) || sub.N != 2 {
		t.Fatalf("subset %+v", sub)
	}
	if h := s.Head(2); h.N != 2 || len(h.X) != 4 || s.Head(0) != s {
		t.Fatal("head")
	}
}

// An idx dataset normalises with the values its config pins, after
// checking them against the training images; a wrong pin is a one-line
// error naming the field.
func TestIDXPinnedNormalisation(t *testing.T) {
	dir := t.TempDir()
	idxFile := func(name string, dims []int, b []byte) {
		h := []byte{0, 0, 8, byte(len(dims))}
		for _, d := range dims {
			h = append(h, byte(d>>24), byte(d>>16), byte(d>>8), byte(d))
		}
		writeGz(t, filepath.Join(dir, name), append(h, b...))
	}
	pix := []byte{0, 255, 51, 102, 0, 0, 255, 255} // 2 images of 2x2
	for _, p := range []string{"train", "t10k"} {
		idxFile(p+"-images-idx3-ubyte.gz", []int{2, 2, 2}, pix)
		idxFile(p+"-labels-idx1-ubyte.gz", []int{2}, []byte{0, 1})
	}
	spec, tr, err := Describe("idx", dir)
	if err != nil {
		t.Fatal(err)
	}
	// The pinned value is the float32 data hash prints; training uses it.
	spec.Mean, spec.Std = float64(tr.Mean), float64(tr.Std)+1e-8
	got, _, err := Load(spec, dir)
	if err != nil || got.Std != float32(spec.Std) || got.Mean != tr.Mean {
		t.Fatalf("pinned %v %v: got %v %v, %v", spec.Mean, spec.Std, got.Mean, got.Std, err)
	}
	for _, tc := range []struct {
		mean, std float64
		want      string
	}{
		{spec.Mean + 0.01, spec.Std, "data.mean: the config pins"},
		{spec.Mean, spec.Std * 1.01, "data.std: the config pins"},
	} {
		s := spec
		s.Mean, s.Std = tc.mean, tc.std
		_, _, err := Load(s, dir)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("mean %v std %v: %v, want %q", tc.mean, tc.std, err, tc.want)
		}
	}
}
