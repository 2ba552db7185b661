package data

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
)

// Set is a labelled image dataset held in memory. X holds N images of
// Rows*Cols normalised pixels each, row-major; Y holds N labels in 0..9.
type Set struct {
	X          []float32
	Y          []uint8
	N          int
	Rows, Cols int
}

// Dim is the number of values per sample.
func (s *Set) Dim() int { return s.Rows * s.Cols }

// Subset copies the samples at idx, in that order, into a new Set.
func (s *Set) Subset(idx []int) *Set {
	d := s.Dim()
	out := &Set{X: make([]float32, len(idx)*d), Y: make([]uint8, len(idx)), N: len(idx), Rows: s.Rows, Cols: s.Cols}
	for i, j := range idx {
		copy(out.X[i*d:(i+1)*d], s.X[j*d:(j+1)*d])
		out.Y[i] = s.Y[j]
	}
	return out
}

// Head returns the first n samples (all of them if n <= 0 or n >= N),
// sharing memory with s.
func (s *Set) Head(n int) *Set {
	if n <= 0 || n >= s.N {
		return s
	}
	return &Set{X: s.X[:n*s.Dim()], Y: s.Y[:n], N: n, Rows: s.Rows, Cols: s.Cols}
}

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
