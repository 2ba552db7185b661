package data

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

func init() { register("text", textKind{}) }

// maxTextBytes caps a text corpus (it is held in memory, one byte a
// character).
const maxTextBytes = 1 << 30

// DefaultHeldOut is the fraction of a text held out, at its end, when the
// config does not say.
const DefaultHeldOut = 0.1

// Unknown is token 0 of every vocabulary: a held-out character the
// training split never shows.
const Unknown = '\uFFFD'

// textKind is a UTF-8 corpus, one .txt or .txt.gz file in the directory
// (besides checksum, readme and licence files),
// modelled character by character. The vocabulary is the training split's
// distinct characters, sorted, after Unknown — so it follows from the
// hashed bytes and every peer derives the same one. The last HeldOut of the
// characters are the held-out set.
type textKind struct{}

func (textKind) Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, &MissingError{Dir: dir, File: "*.txt or *.txt.gz"}
		}
		return nil, err
	}
	var found []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || isSideFile(n) {
			continue
		}
		if strings.HasSuffix(n, ".txt") || strings.HasSuffix(n, ".txt.gz") {
			found = append(found, filepath.Join(dir, n))
		}
	}
	switch len(found) {
	case 0:
		return nil, &MissingError{Dir: dir, File: "*.txt or *.txt.gz"}
	case 1:
		return found, nil
	}
	return nil, fmt.Errorf("data.dir: %s holds %d text files (%v); a text dataset is one .txt or .txt.gz file", dir, len(found), found)
}

// isSideFile tells the files that travel with a corpus but are not it:
// checksums, readme, licence.
func isSideFile(name string) bool {
	u := strings.ToUpper(name)
	for _, p := range []string{"SHA256SUMS", "SHA1SUMS", "MD5SUMS", "README", "LICENSE", "LICENCE"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

func (textKind) Load(files []string, spec Spec) (trainSet, testSet *Set, err error) {
	r, err := openData(files[0])
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTextBytes+1))
	r.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", files[0], err)
	}
	if len(b) > maxTextBytes {
		return nil, nil, fmt.Errorf("%s: more than %d bytes of text", files[0], maxTextBytes)
	}
	if !utf8.Valid(b) {
		return nil, nil, fmt.Errorf("%s: not UTF-8 text", files[0])
	}
	runes := []rune(string(b))
	held := spec.HeldOut
	if held == 0 {
		held = DefaultHeldOut
	}
	if held <= 0 || held >= 1 {
		return nil, nil, fmt.Errorf("data.held_out: must be in (0, 1), got %v", held)
	}
	cut := len(runes) - int(held*float64(len(runes)))
	ctx := max(spec.Context, 1)
	if cut < ctx+1 || len(runes)-cut < ctx+1 {
		return nil, nil, fmt.Errorf("%s: %d characters are too few for windows of %d in both splits", files[0], len(runes), ctx+1)
	}
	seen := map[rune]bool{}
	for _, c := range runes[:cut] {
		seen[c] = true
	}
	vocab := make([]rune, 0, len(seen)+1)
	for c := range seen {
		vocab = append(vocab, c)
	}
	slices.Sort(vocab)
	vocab = append([]rune{Unknown}, vocab...)
	if len(vocab) > 256 {
		return nil, nil, fmt.Errorf("%s: %d distinct characters in the training split, at most 255 fit a byte token", files[0], len(vocab)-1)
	}
	id := make(map[rune]uint8, len(vocab))
	for i, c := range vocab {
		id[c] = uint8(i)
	}
	tokens := make([]uint8, len(runes))
	for i, c := range runes {
		tokens[i] = id[c] // 0 (Unknown) when the training split lacks c
	}
	mk := func(t []uint8) *Set {
		return &Set{Tokens: t, Context: ctx, Stride: ctx, N: (len(t) - 1) / ctx, Classes: len(vocab), Vocab: vocab}
	}
	return mk(tokens[:cut:cut]), mk(tokens[cut:]), nil
}

// Encode maps text to s's tokens (Unknown for characters outside its
// vocabulary).
func Encode(vocab []rune, text string) []uint8 {
	out := make([]uint8, 0, len(text))
	for _, c := range text {
		i, ok := slices.BinarySearch(vocab[1:], c)
		if ok {
			out = append(out, uint8(i+1))
		} else {
			out = append(out, 0)
		}
	}
	return out
}
