package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Spec says which dataset a swarm trains on, as its config pins it.
type Spec struct {
	// Kind is a registered kind: mnist, idx or text.
	Kind string
	// Hash is the content hash of the dataset's files (ContentHash); ""
	// pins nothing beyond what the kind itself checks (mnist: the known
	// SHA-256 of each file).
	Hash string
	// Rows and Cols are an image sample's shape, Classes the number of
	// labels (text: the vocabulary size); 0 takes what the files hold.
	Rows, Cols, Classes int
	// Context is a text window's length (the model's context).
	Context int
	// HeldOut is the fraction of a text held out at its end (0: 0.1).
	HeldOut float64
}

// Kind is one kind of dataset: which files in a directory make it and how
// they are read. Each kind lives in its own file and registers itself.
type Kind interface {
	// Files lists the dataset's files in dir, in the fixed order its
	// content hash covers them.
	Files(dir string) ([]string, error)
	// Load reads the training and held-out sets from the files Files listed.
	Load(files []string, spec Spec) (trainSet, testSet *Set, err error)
}

var kinds = map[string]Kind{}

func register(name string, k Kind) { kinds[name] = k }

// Kinds lists the registered dataset kinds, sorted.
func Kinds() []string { return slices.Sorted(maps.Keys(kinds)) }

func lookup(kind string) (Kind, error) {
	k, ok := kinds[kind]
	if !ok {
		return nil, fmt.Errorf("data.kind: unknown dataset kind %q (want one of %v)", kind, Kinds())
	}
	return k, nil
}

// HashMismatchError says that the files in a directory are not the dataset
// the config pins.
type HashMismatchError struct {
	Dir       string
	Files     []string
	Got, Want string
}

func (e *HashMismatchError) Error() string {
	names := make([]string, len(e.Files))
	for i, f := range e.Files {
		names[i] = filepath.Base(f)
	}
	return fmt.Sprintf("data.hash: the dataset in %s (%s) hashes to %s, the config pins %s: these are other files than the swarm's (swarmtrain data hash %s prints the hash of yours)",
		e.Dir, strings.Join(names, ", "), e.Got, e.Want, e.Dir)
}

// Load finds the dataset spec describes in dir, checks its content hash
// when spec pins one, reads it and checks its shape against spec.
func Load(spec Spec, dir string) (trainSet, testSet *Set, err error) {
	k, err := lookup(spec.Kind)
	if err != nil {
		return nil, nil, err
	}
	files, err := k.Files(dir)
	if err != nil {
		return nil, nil, err
	}
	if spec.Hash != "" {
		got, err := ContentHash(spec.Kind, files)
		if err != nil {
			return nil, nil, err
		}
		if got != spec.Hash {
			return nil, nil, &HashMismatchError{Dir: dir, Files: files, Got: got, Want: spec.Hash}
		}
	}
	if trainSet, testSet, err = k.Load(files, spec); err != nil {
		return nil, nil, err
	}
	if !trainSet.IsText() && (spec.Rows != 0 || spec.Cols != 0) && (spec.Rows != trainSet.Rows || spec.Cols != trainSet.Cols) {
		return nil, nil, fmt.Errorf("data.shape: the config says %dx%d, the images in %s are %dx%d", spec.Rows, spec.Cols, files[0], trainSet.Rows, trainSet.Cols)
	}
	if spec.Classes != 0 && spec.Classes != trainSet.NumClasses() {
		what := "labels"
		if trainSet.IsText() {
			what = "vocabulary entries"
		}
		return nil, nil, fmt.Errorf("data.classes: the config says %d, %s gives %d %s", spec.Classes, files[0], trainSet.NumClasses(), what)
	}
	return trainSet, testSet, nil
}

// ContentHash is the hash a config pins a dataset by: SHA-256 over the
// kind and, per file in Files order, its name without .gz and the SHA-256
// of its uncompressed bytes — so a gzipped and a plain copy of the same
// data hash alike.
func ContentHash(kind string, files []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "swarmtrain/data/v1 %s\n", kind)
	for _, f := range files {
		r, err := openData(f)
		if err != nil {
			return "", err
		}
		fh := sha256.New()
		_, err = io.Copy(fh, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
		fmt.Fprintf(h, "%s %x\n", strings.TrimSuffix(filepath.Base(f), ".gz"), fh.Sum(nil))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Describe reads the dataset of kind in dir and returns the Spec a config
// pins it with: its content hash, shape and classes.
func Describe(kind, dir string) (Spec, *Set, error) {
	k, err := lookup(kind)
	if err != nil {
		return Spec{}, nil, err
	}
	files, err := k.Files(dir)
	if err != nil {
		return Spec{}, nil, err
	}
	spec := Spec{Kind: kind, Context: 1}
	if spec.Hash, err = ContentHash(kind, files); err != nil {
		return Spec{}, nil, err
	}
	tr, _, err := k.Load(files, spec)
	if err != nil {
		return Spec{}, nil, err
	}
	spec.Context = 0
	spec.Classes = tr.NumClasses()
	if !tr.IsText() {
		spec.Rows, spec.Cols = tr.Rows, tr.Cols
	}
	return spec, tr, nil
}

type gzReadCloser struct {
	*gzip.Reader
	f *os.File
}

func (g gzReadCloser) Close() error { g.Reader.Close(); return g.f.Close() }

type fileReader struct {
	*bufio.Reader
	f *os.File
}

func (r fileReader) Close() error { return r.f.Close() }

// openData opens a file of a dataset, gunzipping it when it starts with
// gzip's magic bytes.
func openData(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if magic, err := br.Peek(2); err == nil && bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return gzReadCloser{zr, f}, nil
	}
	return fileReader{br, f}, nil
}

// findFile returns dir/name.gz or dir/name, whichever exists (the first
// of names that does), or a *MissingError naming the first.
func findFile(dir string, names ...string) (string, error) {
	for _, n := range names {
		for _, cand := range []string{n + ".gz", n} {
			p := filepath.Join(dir, cand)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", &MissingError{Dir: dir, File: names[0] + ".gz"}
}
