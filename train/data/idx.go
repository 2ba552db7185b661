// Package data reads MNIST-format datasets, verifies them against known hashes,
// and assigns deterministic shards so that anyone can recompute which samples
// a peer trained on in a round.
package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// maxIDXBytes caps what one IDX file may declare, so a corrupt header cannot
// make us allocate gigabytes. MNIST's largest file is 47 MB.
const maxIDXBytes = 512 << 20

// idx is one decoded IDX file: unsigned bytes with their dimensions.
type idx struct {
	dims []int
	data []byte
}

// readIDX reads an IDX file of unsigned bytes (type 0x08), gzipped or raw.
func readIDX(path string) (*idx, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
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
