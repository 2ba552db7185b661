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
	// Progress, if set, is called as a download proceeds with the bytes
	// received so far and the total (-1 when the server does not say).
	Progress func(name string, done, total int64)
}

// progressWriter reports the bytes written through it.
type progressWriter struct {
	name        string
	done, total int64
	report      func(name string, done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	p.report(p.name, p.done, p.total)
	return len(b), nil
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
		for i, m := range f.Mirrors {
			url := strings.TrimSuffix(m, "/") + "/" + file.Name
			n, err := f.download(ctx, url, dst, file.SHA256)
			if err == nil {
				f.logf("%s: downloaded %d bytes from %s, hash ok", dst, n, url)
				ok = true
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err.Error())
			if i < len(f.Mirrors)-1 {
				f.logf("%s: %v; trying the next mirror", file.Name, err)
			}
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

func (f *Fetcher) download(ctx context.Context, url, dst, want string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	sinks := []io.Writer{tmp, h}
	if f.Progress != nil {
		sinks = append(sinks, &progressWriter{name: filepath.Base(dst), total: resp.ContentLength, report: f.Progress})
	}
	n, err := io.Copy(io.MultiWriter(sinks...), io.LimitReader(resp.Body, maxFileBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	if n > maxFileBytes {
		return 0, fmt.Errorf("GET %s: more than %d bytes, not the file expected", url, maxFileBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return 0, fmt.Errorf("%s from %s: SHA-256 is %s, expected %s", filepath.Base(dst), url, got, want)
	}
	return n, os.Rename(tmp.Name(), dst)
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
