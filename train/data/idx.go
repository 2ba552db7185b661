// Package data holds datasets as stored (image bytes, text tokens): a
// registry of kinds (mnist, idx, text, each in its own file) that find,
// hash-check and read a dataset's files, and the deterministic shard
// assignment anyone can recompute from a round record.
package data

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// maxIDXBytes caps what one IDX file may declare, so a corrupt header cannot
// make us allocate gigabytes. MNIST's largest file is 47 MB.
const maxIDXBytes = 512 << 20

// normTolerance is how far a pinned normalisation may be from the one
// computed from the files: a float32 rounding is ~1e-8 away, another
// dataset's statistics far more.
const normTolerance = 1e-6

func init() { register("idx", idxKind{}) }

// idx is one decoded IDX file: unsigned bytes with their dimensions.
type idx struct {
	dims []int
	data []byte
}

// readIDX reads an IDX file of unsigned bytes (type 0x08), gzipped or raw.
func readIDX(path string) (*idx, error) {
	r, err := openData(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%s: reading IDX header: %w", path, err)
	}
	if hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 {
		return nil, fmt.Errorf("%s: not an IDX file of unsigned bytes (magic % x)", path, hdr)
	}
	nd := int(hdr[3])
	if nd < 1 || nd > 4 {
		return nil, fmt.Errorf("%s: IDX file has %d dimensions, want 1 to 4", path, nd)
	}
	dims := make([]int, nd)
	total := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, fmt.Errorf("%s: reading dimension %d: %w", path, i, err)
		}
		dims[i] = int(d)
		if d == 0 || total > maxIDXBytes/int(d) {
			return nil, fmt.Errorf("%s: dimensions %v are empty or exceed %d bytes", path, dims[:i+1], maxIDXBytes)
		}
		total *= int(d)
	}
	buf := make([]byte, total)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%s: truncated: header declares %d bytes of data: %w", path, total, err)
	}
	return &idx{dims: dims, data: buf}, nil
}

// idxKind is any labelled image set in MNIST's IDX format: train-images-
// idx3-ubyte, train-labels-idx1-ubyte and t10k- (or test-) images and
// labels, gzipped or not, of any image shape and up to 256 classes. Its
// normalisation is the training images' mean and standard deviation.
type idxKind struct{}

func (idxKind) Files(dir string) ([]string, error) {
	var out []string
	for _, names := range [][]string{
		{"train-images-idx3-ubyte"}, {"train-labels-idx1-ubyte"},
		{"t10k-images-idx3-ubyte", "test-images-idx3-ubyte"}, {"t10k-labels-idx1-ubyte", "test-labels-idx1-ubyte"},
	} {
		p, err := findFile(dir, names...)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (idxKind) Load(files []string, spec Spec) (trainSet, testSet *Set, err error) {
	if trainSet, err = loadPair(files[0], files[1]); err != nil {
		return nil, nil, err
	}
	if testSet, err = loadPair(files[2], files[3]); err != nil {
		return nil, nil, err
	}
	if testSet.Rows != trainSet.Rows || testSet.Cols != trainSet.Cols {
		return nil, nil, fmt.Errorf("%s: images are %dx%d, the training images in %s %dx%d", files[2], testSet.Rows, testSet.Cols, files[0], trainSet.Rows, trainSet.Cols)
	}
	classes := spec.Classes
	if classes == 0 {
		for _, s := range []*Set{trainSet, testSet} {
			for _, y := range s.Y {
				classes = max(classes, int(y)+1)
			}
		}
	}
	for i, s := range []*Set{trainSet, testSet} {
		for j, y := range s.Y {
			if int(y) >= classes {
				return nil, nil, fmt.Errorf("%s: label %d of sample %d is not below data.classes %d", files[2*i+1], y, j, classes)
			}
		}
	}
	// Normalise with the training images' statistics, computed in float64
	// in file order (the same on every peer).
	var sum, sq float64
	for _, p := range trainSet.Pix {
		v := float64(p) / 255
		sum += v
		sq += v * v
	}
	n := float64(len(trainSet.Pix))
	mean := sum / n
	std := math.Sqrt(max(sq/n-mean*mean, 0))
	if std == 0 {
		std = 1
	}
	if spec.Mean != 0 || spec.Std != 0 {
		// The printed values are float32s in shortest form; a peer whose
		// float64 sum rounds differently (fused multiply-add) is still
		// within far less than normTolerance of them.
		if math.Abs(spec.Mean-mean) > normTolerance {
			return nil, nil, fmt.Errorf("data.mean: the config pins %v, the training images in %s have mean %v", spec.Mean, files[0], float32(mean))
		}
		if math.Abs(spec.Std-std) > normTolerance {
			return nil, nil, fmt.Errorf("data.std: the config pins %v, the training images in %s have standard deviation %v", spec.Std, files[0], float32(std))
		}
		mean, std = spec.Mean, spec.Std
	}
	for _, s := range []*Set{trainSet, testSet} {
		s.Classes, s.Mean, s.Std = classes, float32(mean), float32(std)
	}
	return trainSet, testSet, nil
}

// loadPair reads an images file and its labels into a Set of stored bytes.
func loadPair(ip, lp string) (*Set, error) {
	im, err := readIDX(ip)
	if err != nil {
		return nil, err
	}
	lb, err := readIDX(lp)
	if err != nil {
		return nil, err
	}
	if len(im.dims) != 3 {
		return nil, fmt.Errorf("%s: want 3 dimensions (n, rows, cols), got %v", ip, im.dims)
	}
	if len(lb.dims) != 1 || lb.dims[0] != im.dims[0] {
		return nil, fmt.Errorf("%s: %v labels for %d images in %s", lp, lb.dims, im.dims[0], ip)
	}
	return &Set{N: im.dims[0], Rows: im.dims[1], Cols: im.dims[2], Pix: im.data, Y: lb.data}, nil
}
