// Package safetensors reads and writes the safetensors checkpoint format
// (https://huggingface.co/docs/safetensors), float32 tensors only, so that a
// PyTorch user can load what a swarm trained with safetensors.torch.load_file.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON mapping
// tensor names to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" map of strings), then the tensors' bytes, little-endian,
// back to back.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Tensor is one named float32 tensor.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// MaxHeaderBytes caps the JSON header, as the reference implementation
// does (100 MB); ours are a few KB.
const MaxHeaderBytes = 100 << 20

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// Encode writes tensors (in the order given) and metadata as a safetensors
// file. The header is padded with spaces to a multiple of 8 bytes so the
// data starts aligned, as the reference writer does.
func Encode(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	seen := map[string]bool{}
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" || seen[t.Name] {
			return nil, fmt.Errorf("safetensors: tensor name %q is empty, reserved or repeated", t.Name)
		}
		seen[t.Name] = true
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) {
			return nil, fmt.Errorf("safetensors: tensor %s: shape %v holds %d values, data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		header[t.Name] = entry{DType: "F32", Shape: t.Shape, Offsets: [2]int64{off, off + 4*int64(n)}}
		off += 4 * int64(n)
	}
	hj, err := json.Marshal(header) // map keys are sorted: deterministic bytes
	if err != nil {
		return nil, err
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	out := make([]byte, 8, 8+len(hj)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(hj)))
	out = append(out, hj...)
	for _, t := range tensors {
		for _, v := range t.Data {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out, nil
}

// Decode parses a safetensors file, validating everything: header size,
// JSON, dtypes (F32 only), shapes against byte lengths, offsets in range,
// and that the tensors tile the data exactly, with no gap and no overlap.
// Tensors come back sorted by data offset.
func Decode(b []byte) ([]Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("safetensors: %d bytes, too short for a header", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeaderBytes || n > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("safetensors: header of %d bytes in a file of %d", n, len(b))
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b[8 : 8+n]))
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	data := b[8+n:]
	var meta map[string]string
	type item struct {
		name string
		e    entry
	}
	var items []item
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: __metadata__: %w", err)
			}
			continue
		}
		if name == "" {
			// Encode never writes one, and loaders key tensors by name.
			return nil, nil, fmt.Errorf("safetensors: a tensor with an empty name")
		}
		var e entry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		if e.DType != "F32" {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: dtype %q, only F32 is supported", name, e.DType)
		}
		count := int64(1)
		for _, s := range e.Shape {
			if s < 0 || (s > 0 && count > int64(len(data))/int64(s)) {
				return nil, nil, fmt.Errorf("safetensors: tensor %s: shape %v does not fit in %d bytes", name, e.Shape, len(data))
			}
			count *= int64(s)
		}
		if e.Offsets[0] < 0 || e.Offsets[1] < e.Offsets[0] || e.Offsets[1] > int64(len(data)) || e.Offsets[1]-e.Offsets[0] != 4*count {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: offsets %v for shape %v (%d bytes of data)", name, e.Offsets, e.Shape, len(data))
		}
		items = append(items, item{name, e})
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].e.Offsets[0] != items[j].e.Offsets[0] {
			return items[i].e.Offsets[0] < items[j].e.Offsets[0]
		}
		return items[i].name < items[j].name
	})
	var pos int64
	out := make([]Tensor, 0, len(items))
	for _, it := range items {
		if it.e.Offsets[0] != pos {
			return nil, nil, fmt.Errorf("safetensors: tensor %s starts at %d, expected %d (gap or overlap)", it.name, it.e.Offsets[0], pos)
		}
		pos = it.e.Offsets[1]
		vals := make([]float32, (it.e.Offsets[1]-it.e.Offsets[0])/4)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[it.e.Offsets[0]+4*int64(i):]))
		}
		out = append(out, Tensor{Name: it.name, Shape: slices.Clone(it.e.Shape), Data: vals})
	}
	if pos != int64(len(data)) {
		return nil, nil, fmt.Errorf("safetensors: %d bytes of data after the last tensor", int64(len(data))-pos)
	}
	return out, meta, nil
}
