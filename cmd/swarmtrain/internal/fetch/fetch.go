// Package fetch downloads dataset files from public mirrors, verifying each
// against its known SHA-256 before it is put in place.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// File is one file to fetch and the SHA-256 it must have.
type File struct {
	Name   string
	SHA256 string
}

// maxFileBytes caps a download: MNIST's largest file is under 10 MB
// gzipped, so anything far bigger is not the file we asked for.
const maxFileBytes = 64 << 20

// Fetcher downloads files into a directory.
type Fetcher struct {
	Client  *http.Client
	Mirrors []string // base URLs ending in "/", tried in order
	Log     func(format string, args ...any)
}

// Get makes sure every file is in dir with the right hash: files already
// there and valid are kept, others are downloaded from the first mirror that
// serves the right bytes. Files are written to a temporary name and renamed
// into place only once verified, so an interrupted run leaves nothing corrupt.
func (f *Fetcher) Get(ctx context.Context, dir string, files []File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, file := range files {
		dst := filepath.Join(dir, file.Name)
		if got, err := hashFile(dst); err == nil && got == file.SHA256 {
			f.logf("%s: present, hash ok", dst)
			continue
		}
		var errs []string
		ok := false
		for _, m := range f.Mirrors {
			url := strings.TrimSuffix(m, "/") + "/" + file.Name
			err := f.download(ctx, url, dst, file.SHA256)
			if err == nil {
				f.logf("%s: downloaded from %s, hash ok", dst, url)
				ok = true
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err.Error())
			f.logf("%s: %v; trying the next mirror", file.Name, err)
		}
		if !ok {
			return fmt.Errorf("could not fetch %s from any mirror: %s", file.Name, strings.Join(errs, "; "))
		}
	}
	return nil
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		f.Log(format, args...)
	}
}

func (f *Fetcher) download(ctx context.Context, url, dst, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, maxFileBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if n > maxFileBytes {
		return fmt.Errorf("GET %s: more than %d bytes, not the file expected", url, maxFileBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s from %s: SHA-256 is %s, expected %s", filepath.Base(dst), url, got, want)
	}
	return os.Rename(tmp.Name(), dst)
}

func hashFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
