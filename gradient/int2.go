package gradient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// topKInt2 is the "topk+int2" codec: chunk-wise top-k with 2-bit values.
//
// The vector is cut into chunks of 4096 coordinates and every chunk keeps
// its k = round(density·4096) largest magnitudes (all of a chunk shorter
// than k), so the count is known from the header and every index fits the
// chunk. A kept value costs 2 bits: its sign and which of two magnitudes
// (lo, hi) stands for it; each chunk sends its two magnitudes as bfloat16,
// chosen by 2-means over its kept magnitudes. Positions are sent as gaps
// within the chunk, Golomb-Rice coded with one parameter for the whole
// vector (the one that makes the payload shortest): at density 1 % a
// position costs about 8 bits, at 0.5 % about 9, instead of the 12 bits of
// a plain index into 4096. What the 2-bit values drop goes back through
// error feedback (ErrorFeedback), as with every lossy codec here.
//
// Payload (after the wire header):
//
//	u8      log2 of the chunk size (4..16)
//	uvarint k, coordinates kept per full chunk (1..chunk size)
//	u8      Rice parameter r (0..log2 chunk size)
//	4·c     per chunk: lo, hi as bfloat16 bits, little-endian (finite, ≥ 0, lo ≤ hi)
//	...     bit stream, least significant bit first: per chunk, its k gaps
//	        (position − previous − 1, previous starting at −1) as q = gap>>r
//	        one-bits, a zero-bit and the low r bits of the gap, then its k
//	        2-bit codes (bit 0: hi, bit 1: negative); zero bits pad the last
//	        byte and nothing follows.
//
// A decoder reads the chunk count from the vector length it expects, so
// every loop is bounded by that length or by the bytes present.
type topKInt2 struct {
	name    string
	density float64
}

const (
	int2ChunkLog    = 12
	int2MinChunkLog = 4
	int2MaxChunkLog = 16
	// int2LloydRounds bounds the 2-means iterations per chunk.
	int2LloydRounds = 8
)

func (c *topKInt2) Name() string { return c.name }

// perChunk is how many coordinates a full chunk of 1<<log keeps.
func (c *topKInt2) perChunk(log int) int {
	size := 1 << log
	return max(1, min(size, int(math.Round(c.density*float64(size)))))
}

// int2Chunk is what the encoder decided for one chunk.
type int2Chunk struct {
	pos    []uint16 // ascending positions in the chunk
	codes  []byte   // 2-bit codes, one a byte
	lo, hi uint16   // bfloat16 bits
}

func (c *topKInt2) Encode(dst []byte, v []float32) ([]byte, error) {
	if err := checkFinite(v); err != nil {
		return nil, err
	}
	const log = int2ChunkLog
	size := 1 << log
	n := len(v)
	nch := (n + size - 1) / size
	kc := c.perChunk(log)
	enc := make([]int2Chunk, nch)
	posBuf := make([]uint16, nch*kc)
	codeBuf := make([]byte, nch*kc)
	// Chunks are independent: encode them on all cores (chunks splits by
	// elements, at chunk boundaries), each into its own slots, so the bytes
	// do not depend on the number of cores.
	chunks(n, size, func(lo, hi int) error {
		scratch := make([]float32, size)
		for j := lo / size; j < (hi+size-1)/size; j++ {
			x := v[j*size : min(n, (j+1)*size)]
			k := min(kc, len(x))
			ch := &enc[j]
			ch.pos, ch.codes = posBuf[j*kc:j*kc+k], codeBuf[j*kc:j*kc+k]
			int2Select(x, k, scratch, ch.pos)
			ch.lo, ch.hi = int2Levels(x, ch.pos, scratch)
			lo, hi := float64(bf16Value(ch.lo)), float64(bf16Value(ch.hi))
			for i, p := range ch.pos {
				m := math.Abs(float64(x[p]))
				var code byte
				if m-lo > hi-m {
					code = 1
				}
				if x[p] < 0 {
					code |= 2
				}
				ch.codes[i] = code
			}
		}
		return nil
	})
	r := int2RiceParam(enc, log)
	dst = append(dst, byte(log))
	dst = binary.AppendUvarint(dst, uint64(kc))
	dst = append(dst, byte(r))
	for _, ch := range enc {
		dst = binary.LittleEndian.AppendUint16(dst, ch.lo)
		dst = binary.LittleEndian.AppendUint16(dst, ch.hi)
	}
	var w bitWriter
	w.buf = dst
	for _, ch := range enc {
		prev := -1
		for _, p := range ch.pos {
			gap := uint64(int(p) - prev - 1)
			prev = int(p)
			for q := gap >> r; ; q -= 32 {
				if q < 32 {
					w.write(1<<q-1, uint(q)) // q one-bits
					break
				}
				w.write(1<<32-1, 32)
			}
			w.write(0, 1)
			w.write(gap&(1<<r-1), uint(r))
		}
		for _, code := range ch.codes {
			w.write(uint64(code), 2)
		}
	}
	return w.flush(), nil
}

// int2Select writes to pos, ascending, the positions of the k largest
// magnitudes of x, ties going to the lower position. It finds the k-th
// largest magnitude by a histogram of the top bits of the magnitudes (for
// non-negative floats the bits order like the values), then a selection
// among the few in the bucket that holds it.
func int2Select(x []float32, k int, scratch []float32, pos []uint16) {
	if k >= len(x) {
		for i := range pos {
			pos[i] = uint16(i)
		}
		return
	}
	var hist [1 << 11]int32
	for _, v := range x {
		hist[math.Float32bits(v)<<1>>21]++ // magnitude bits 30..20
	}
	b, above := len(hist)-1, 0
	for ; above+int(hist[b]) < k; b-- {
		above += int(hist[b])
	}
	cand := scratch[:0]
	for _, v := range x {
		if int(math.Float32bits(v)<<1>>21) == b {
			cand = append(cand, abs32(v))
		}
	}
	t := nthLargest(cand, k-above-1)
	ties := k - above
	for _, c := range cand {
		if c > t {
			ties--
		}
	}
	j := 0
	for i, v := range x {
		a := abs32(v)
		if a > t || (a == t && ties > 0) {
			if a == t {
				ties--
			}
			pos[j] = uint16(i)
			j++
		}
	}
}

// int2Levels returns the two magnitudes (bfloat16 bits, lo ≤ hi) that
// stand for the kept values: 2-means over their magnitudes, Lloyd's
// iterations from the smallest and the largest, in float64.
func int2Levels(x []float32, pos []uint16, scratch []float32) (uint16, uint16) {
	if len(pos) == 0 {
		return 0, 0
	}
	m := scratch[:len(pos)]
	for i, p := range pos {
		m[i] = abs32(x[p])
	}
	lo, hi := float64(slices.Min(m)), float64(slices.Max(m))
	for it := 0; it < int2LloydRounds && lo < hi; it++ {
		mid := (lo + hi) / 2
		var sl, sh float64
		var nl, nh int
		for _, v := range m {
			if f := float64(v); f <= mid {
				sl, nl = sl+f, nl+1
			} else {
				sh, nh = sh+f, nh+1
			}
		}
		nlo, nhi := sl/float64(nl), sh/float64(nh) // both groups hold one extreme, so neither is empty
		if nlo == lo && nhi == hi {
			break
		}
		lo, hi = nlo, nhi
	}
	return toBF16(float32(lo)), toBF16(float32(hi))
}

// int2RiceParam is the Rice parameter that codes every gap in the fewest bits.
func int2RiceParam(enc []int2Chunk, log int) int {
	best, bestBits := 0, uint64(math.MaxUint64)
	for r := 0; r <= log; r++ {
		var total uint64
		for _, ch := range enc {
			prev := -1
			for _, p := range ch.pos {
				total += uint64(int(p)-prev-1)>>r + 1 + uint64(r)
				prev = int(p)
			}
		}
		if total < bestBits {
			best, bestBits = r, total
		}
	}
	return best
}

func (c *topKInt2) Decode(dst []float32, b []byte) error {
	n := len(dst)
	if len(b) < 3 {
		return fmt.Errorf("%s: %d bytes, too short for the parameters", c.name, len(b))
	}
	log := int(b[0])
	if log < int2MinChunkLog || log > int2MaxChunkLog {
		return fmt.Errorf("%s: chunk size 2^%d out of range", c.name, log)
	}
	size := 1 << log
	kc64, w := binary.Uvarint(b[1:])
	if w <= 0 || kc64 < 1 || kc64 > uint64(size) {
		return fmt.Errorf("%s: bad count per chunk", c.name)
	}
	kc := int(kc64)
	b = b[1+w:]
	if len(b) < 1 {
		return fmt.Errorf("%s: no Rice parameter", c.name)
	}
	r := uint(b[0])
	if r > uint(log) {
		return fmt.Errorf("%s: Rice parameter %d over the chunk's %d bits", c.name, r, log)
	}
	b = b[1:]
	nch := (n + size - 1) / size
	if len(b) < 4*nch {
		return fmt.Errorf("%s: %d bytes for the magnitudes of %d chunks", c.name, len(b), nch)
	}
	levels, stream := b[:4*nch], b[4*nch:]
	rd := bitReader{b: stream}
	pos := make([]uint16, min(kc, n)) // bounded by the vector, not by the bytes
	clear(dst)
	for j := 0; j < nch; j++ {
		lo16 := binary.LittleEndian.Uint16(levels[4*j:])
		hi16 := binary.LittleEndian.Uint16(levels[4*j+2:])
		if lo16 >= 0x7f80 || hi16 >= 0x7f80 || lo16 > hi16 { // sign set, Inf, NaN, or out of order
			return fmt.Errorf("%s: chunk %d: magnitudes %#04x, %#04x are not finite, non-negative and ordered", c.name, j, lo16, hi16)
		}
		lo, hi := bf16Value(lo16), bf16Value(hi16)
		x := dst[j*size : min(n, (j+1)*size)]
		pos := pos[:min(kc, len(x))]
		prev := -1
		for i := range pos {
			// At most len(x)>>r one-bits: more would leave the chunk.
			q, err := rd.unary(uint64(len(x)) >> r)
			if err != nil {
				return fmt.Errorf("%s: chunk %d, position %d: %w", c.name, j, i, err)
			}
			low, err := rd.read(r)
			if err != nil {
				return fmt.Errorf("%s: chunk %d, position %d: %w", c.name, j, i, err)
			}
			p := uint64(prev+1) + (q<<r | low)
			if p >= uint64(len(x)) {
				return fmt.Errorf("%s: chunk %d, position %d: %d out of range for a chunk of %d", c.name, j, i, p, len(x))
			}
			prev = int(p)
			pos[i] = uint16(p)
		}
		for i, p := range pos {
			code, err := rd.read(2)
			if err != nil {
				return fmt.Errorf("%s: chunk %d, value %d: %w", c.name, j, i, err)
			}
			v := lo
			if code&1 != 0 {
				v = hi
			}
			if code&2 != 0 {
				v = 0 - v // +0 for a zero magnitude, never -0
			}
			x[p] = v
		}
	}
	return rd.finish(c.name)
}

// toBF16 rounds a finite, non-negative float32 to bfloat16 bits (nearest,
// ties to even), saturating at the largest finite bfloat16.
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	u += 0x7fff + (u>>16)&1
	h := uint16(u >> 16)
	if h >= 0x7f80 {
		return 0x7f7f
	}
	return h
}

func bf16Value(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// bitWriter appends bits to buf, least significant first.
type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc uint
}

// write appends the low n (≤ 32) bits of v.
func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= (v & (1<<n - 1)) << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// flush pads the last byte with zero bits and returns the bytes.
func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.buf
}

// bitReader reads bits from b, least significant first; pos is in bits.
type bitReader struct {
	b   []byte
	pos uint64
}

var errBitsEnd = errors.New("bit stream ends early")

// peek returns the next bits (at least min(57, what is left)) in the low
// bits of a word.
func (r *bitReader) peek() uint64 {
	i := r.pos >> 3
	var w uint64
	if i+8 <= uint64(len(r.b)) {
		w = binary.LittleEndian.Uint64(r.b[i:])
	} else {
		for j := uint64(0); i+j < uint64(len(r.b)); j++ {
			w |= uint64(r.b[i+j]) << (8 * j)
		}
	}
	return w >> (r.pos & 7)
}

func (r *bitReader) left() uint64 { return uint64(len(r.b))*8 - r.pos }

// read returns the next n (≤ 32) bits.
func (r *bitReader) read(n uint) (uint64, error) {
	if uint64(n) > r.left() {
		return 0, errBitsEnd
	}
	v := r.peek() & (1<<n - 1)
	r.pos += uint64(n)
	return v, nil
}

// unary counts one-bits up to the next zero-bit (consumed), failing when
// there are more than limit of them or the stream ends first.
func (r *bitReader) unary(limit uint64) (uint64, error) {
	var q uint64
	for {
		left := r.left()
		if left == 0 {
			return 0, errBitsEnd
		}
		avail := min(left, 57)
		ones := uint64(bits.TrailingZeros64(^r.peek()))
		if ones < avail {
			q += ones
			if q > limit {
				return 0, fmt.Errorf("run of %d one-bits, at most %d fit", q, limit)
			}
			r.pos += ones + 1
			return q, nil
		}
		q += avail
		r.pos += avail
		if q > limit {
			return 0, fmt.Errorf("run of over %d one-bits, at most %d fit", q, limit)
		}
	}
}

// finish checks that only zero padding bits of the last byte are left.
func (r *bitReader) finish(name string) error {
	if left := r.left(); left >= 8 {
		return fmt.Errorf("%s: %d bytes after the bit stream", name, left/8)
	} else if left > 0 && r.peek()&(1<<left-1) != 0 {
		return fmt.Errorf("%s: padding bits are not zero", name)
	}
	return nil
}
