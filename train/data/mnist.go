package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MNIST normalisation constants: pixels are scaled to [0,1], then
// standardised with the training set's mean and standard deviation.
const (
	mnistMean = 0.1307
	mnistStd  = 0.3081
)

func init() { register("mnist", mnistKind{}) }

// MNISTNormalisation is the mean and standard deviation LoadMNIST
// standardises pixels (scaled to [0,1]) with, for checkpoint metadata.
func MNISTNormalisation() (mean, std float64) { return mnistMean, mnistStd }

// File is one file of a dataset and the SHA-256 of its bytes.
type File struct {
	Name   string
	SHA256 string
}

// MNISTFiles lists the four gzipped MNIST files with their SHA-256 sums.
func MNISTFiles() []File {
	return []File{
		{"train-images-idx3-ubyte.gz", "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"},
		{"train-labels-idx1-ubyte.gz", "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"},
		{"t10k-images-idx3-ubyte.gz", "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"},
		{"t10k-labels-idx1-ubyte.gz", "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b"},
	}
}

// mnistRawSums are the sums of the uncompressed files, for users who keep them
// gunzipped.
func mnistRawSums() map[string]string {
	return map[string]string{
		"train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
		"train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
		"t10k-images-idx3-ubyte":  "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
		"t10k-labels-idx1-ubyte":  "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
	}
}

// MNISTMirrors lists the public mirrors that serve the gzipped files, in the
// order a downloader should try them. yann.lecun.com is left out: it now
// answers with an HTTP 403 more often than not.
func MNISTMirrors() []string {
	return []string{
		"https://ossci-datasets.s3.amazonaws.com/mnist/",
		"https://storage.googleapis.com/cvdf-datasets/mnist/",
	}
}

// MissingError says that a dataset is not where we looked, and how to get it.
type MissingError struct {
	Dir  string // where we looked
	File string // the first file that was missing
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("dataset not found: no %s in %s; for MNIST fetch it with: swarmtrain data get mnist --dir %s",
		e.File, e.Dir, e.Dir)
}

// HashError says that a file's bytes are not the ones we know.
type HashError struct {
	Path, Want, Got string
}

func (e *HashError) Error() string {
	return fmt.Sprintf("%s: SHA-256 is %s, MNIST's is %s (data.kind: mnist): a corrupt or partial download (fetch it again: swarmtrain data get mnist), or other IDX files (set data.kind: idx and data.hash from swarmtrain data hash DIR)",
		e.Path, e.Got, e.Want)
}

// VerifyFile checks a file's SHA-256 against want (lower-case hex).
func VerifyFile(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return &HashError{Path: path, Want: want, Got: got}
	}
	return nil
}

// mnistKind is MNIST: the idx files with their published hashes (checked
// file by file), the download mirrors, and the normalisation every MNIST
// reference uses.
type mnistKind struct{}

func (mnistKind) Files(dir string) ([]string, error) {
	var out []string
	for _, f := range MNISTFiles() {
		raw := f.Name[:len(f.Name)-len(".gz")]
		p, err := findFile(dir, raw)
		if err != nil {
			return nil, err
		}
		want := f.SHA256
		if filepath.Base(p) == raw {
			want = mnistRawSums()[raw]
		}
		if err := VerifyFile(p, want); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (mnistKind) Load(files []string, spec Spec) (trainSet, testSet *Set, err error) {
	spec.Classes = 10
	if trainSet, testSet, err = (idxKind{}).Load(files, spec); err != nil {
		return nil, nil, err
	}
	for _, s := range []*Set{trainSet, testSet} {
		s.Mean, s.Std = mnistMean, mnistStd
	}
	return trainSet, testSet, nil
}

// LoadMNIST reads and verifies the MNIST training and test sets from dir.
// A missing file gives a *MissingError, a corrupt one a *HashError.
func LoadMNIST(dir string) (trainSet, testSet *Set, err error) {
	return Load(Spec{Kind: "mnist"}, dir)
}
