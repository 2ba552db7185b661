package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// serve answers /<name> with the given bytes and counts requests.
func serve(t *testing.T, files map[string][]byte, hits *int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFallsBackToNextMirrorAndSkipsValidFiles(t *testing.T) {
	a, b := []byte("first file"), []byte("second file")
	files := []File{{Name: "a.gz", SHA256: sum(a)}, {Name: "b.gz", SHA256: sum(b)}}
	var badHits, goodHits int
	bad := serve(t, map[string][]byte{"a.gz": []byte("tampered")}, &badHits) // wrong bytes, then 404
	good := serve(t, map[string][]byte{"a.gz": a, "b.gz": b}, &goodHits)
	dir := filepath.Join(t.TempDir(), "mnist")
	var log []string
	var progressed int64
	f := &Fetcher{
		Mirrors:  []string{bad.URL, good.URL + "/"},
		Log:      func(format string, args ...any) { log = append(log, format) },
		Progress: func(_ string, done, _ int64) { progressed = max(progressed, done) },
	}
	if err := f.Get(context.Background(), dir, files); err != nil {
		t.Fatal(err)
	}
	for _, fl := range files {
		got, err := hashFile(filepath.Join(dir, fl.Name))
		if err != nil || got != fl.SHA256 {
			t.Fatalf("%s: hash %s, err %v", fl.Name, got, err)
		}
	}
	if badHits != 2 || goodHits != 2 || progressed != int64(len(b)) {
		t.Fatalf("hits bad %d good %d, progress %d", badHits, goodHits, progressed)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	// Second run: both files present and valid, no request at all.
	if err := f.Get(context.Background(), dir, files); err != nil {
		t.Fatal(err)
	}
	if badHits != 2 || goodHits != 2 {
		t.Fatalf("valid files fetched again: hits bad %d good %d", badHits, goodHits)
	}
}

func TestHashMismatchNamesFileAndHashes(t *testing.T) {
	want := sum([]byte("real"))
	var hits int
	srv := serve(t, map[string][]byte{"x.gz": []byte("fake")}, &hits)
	dir := t.TempDir()
	// A stale invalid file is replaced only by a verified download, never kept.
	os.WriteFile(filepath.Join(dir, "x.gz"), []byte("stale"), 0o644)
	err := (&Fetcher{Mirrors: []string{srv.URL}}).Get(context.Background(), dir, []File{{Name: "x.gz", SHA256: want}})
	wantMsg := "could not fetch x.gz from any mirror: x.gz from " + srv.URL + "/x.gz: SHA-256 is " + sum([]byte("fake")) + ", expected " + want
	if err == nil || err.Error() != wantMsg {
		t.Fatalf("got %v\nwant %s", err, wantMsg)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestCancelledContextStops(t *testing.T) {
	var hits int
	srv := serve(t, nil, &hits)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := (&Fetcher{Mirrors: []string{srv.URL, srv.URL}}).Get(ctx, t.TempDir(), []File{{Name: "x.gz", SHA256: "00"}})
	if err != context.Canceled || hits != 0 {
		t.Fatalf("err %v, hits %d", err, hits)
	}
}
