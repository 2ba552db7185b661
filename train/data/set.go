package data

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
)

// Set is a dataset held in memory as stored: image bytes or text tokens,
// never a float copy (a contributor holding MNIST as float32 spent 188 MB on
// it; as bytes it is 47 MB). Samples are normalised when a batch is filled
// (Fill).
//
// An image set holds N samples of Rows×Cols values with a label each in
// 0..Classes-1: Pix are the stored bytes, normalised as (p/255 − Mean)/Std;
// a set built in memory (Synthetic) holds already-normalised values in X
// instead (Pix nil). A text set holds Tokens (indices into Vocab); its
// sample i is the Context+1 tokens at Tokens[i*Stride:] — Context inputs and
// each one's next token as target — and Y is nil.
type Set struct {
	Pix        []uint8
	X          []float32
	Y          []uint8
	N          int
	Rows, Cols int
	// Classes is the number of labels (0 means 10, MNIST's); for text the
	// vocabulary size.
	Classes   int
	Mean, Std float32

	Tokens          []uint8
	Context, Stride int
	Vocab           []rune
}

// IsText reports whether s is a text set (samples are token windows).
func (s *Set) IsText() bool { return s.Tokens != nil }

// NumClasses is the number of labels or, for text, of vocabulary entries.
func (s *Set) NumClasses() int {
	if s.Classes == 0 {
		return 10
	}
	return s.Classes
}

// Dim is the number of values per sample: pixels, or a text window's
// Context+1 tokens.
func (s *Set) Dim() int {
	if s.IsText() {
		return s.Context + 1
	}
	return s.Rows * s.Cols
}

// Fill writes image sample i, normalised, into dst (Dim values).
func (s *Set) Fill(dst []float32, i int) {
	d := s.Rows * s.Cols
	if s.Pix == nil {
		copy(dst[:d], s.X[i*d:(i+1)*d])
		return
	}
	// The same float32 expression the loader once applied to the whole
	// set, so that training from bytes gives the figures it gave.
	for j, p := range s.Pix[i*d : (i+1)*d] {
		dst[j] = (float32(p)/255 - s.Mean) / s.Std
	}
}

// Window is text sample i: Context+1 tokens, sharing memory with s.
func (s *Set) Window(i int) []uint8 {
	return s.Tokens[i*s.Stride : i*s.Stride+s.Context+1]
}

// Subset copies the samples at idx, in that order, into a new Set.
func (s *Set) Subset(idx []int) *Set {
	out := *s
	out.N = len(idx)
	if s.IsText() {
		w := s.Context + 1
		out.Stride = w
		out.Tokens = make([]uint8, len(idx)*w)
		for i, j := range idx {
			copy(out.Tokens[i*w:(i+1)*w], s.Window(j))
		}
		return &out
	}
	d := s.Dim()
	out.Y = make([]uint8, len(idx))
	if s.Pix != nil {
		out.Pix = make([]uint8, len(idx)*d)
	} else {
		out.X = make([]float32, len(idx)*d)
	}
	for i, j := range idx {
		if s.Pix != nil {
			copy(out.Pix[i*d:(i+1)*d], s.Pix[j*d:(j+1)*d])
		} else {
			copy(out.X[i*d:(i+1)*d], s.X[j*d:(j+1)*d])
		}
		out.Y[i] = s.Y[j]
	}
	return &out
}

// Head returns the first n samples (all of them if n <= 0 or n >= N),
// sharing memory with s.
func (s *Set) Head(n int) *Set {
	if n <= 0 || n >= s.N {
		return s
	}
	out := *s
	out.N = n
	if s.IsText() {
		out.Tokens = s.Tokens[:(n-1)*s.Stride+s.Context+1]
		return &out
	}
	d := s.Dim()
	if s.Pix != nil {
		out.Pix = s.Pix[:n*d]
	} else {
		out.X = s.X[:n*d]
	}
	out.Y = s.Y[:n]
	return &out
}

// Bytes is the memory the set's samples take.
func (s *Set) Bytes() int { return len(s.Pix) + 4*len(s.X) + len(s.Y) + len(s.Tokens) }

// Rand returns the PRNG swarmtrain uses wherever a result must be
// reproducible by others: PCG from math/rand/v2, whose output is specified
// and stable across Go releases.
func Rand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Permutation returns a deterministic permutation of 0..n-1 for seed.
func Permutation(seed uint64, n int) []int {
	return Rand(seed).Perm(n)
}

// PeerSeed derives the seed of a peer's shard in a round:
// the first 8 bytes (big-endian) of SHA-256("swarmtrain/assign/v1" || seed || peer).
func PeerSeed(seed uint64, peer string) uint64 {
	h := sha256.New()
	h.Write([]byte("swarmtrain/assign/v1"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(peer))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// Assign returns the indices of the samples that peer trains on in the round
// whose seed is seed: shardSize distinct indices in [0, total), in the order
// they are to be visited. Anyone can recompute it from the round record.
// It draws a partial Fisher-Yates shuffle from PCG seeded with PeerSeed, so
// it costs O(shardSize) time beyond one O(total) index table.
func Assign(seed uint64, peer string, total, shardSize int) []int {
	if shardSize > total {
		shardSize = total
	}
	if shardSize <= 0 {
		return nil
	}
	r := Rand(PeerSeed(seed, peer))
	idx := make([]int, total)
	for i := range idx {
		idx[i] = i
	}
	for i := 0; i < shardSize; i++ {
		j := i + r.IntN(total-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	return idx[:shardSize:shardSize]
}
