package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// apiCoordinator is a coordinator with a store, a manifest and the API,
// and a way to seal rounds with one entry for peer each.
type apiCoordinator struct {
	*Coordinator
	url string
}

func newAPICoordinator(t *testing.T) *apiCoordinator {
	t.Helper()
	st, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	me := newTestPeer(t)
	c := &Coordinator{base: &base{key: me.key, id: me.id, store: st, log: slog.Default()}, metrics: newMetrics(),
		byRound: map[int64]cid.Cid{}, scores: map[string]record.PeerScore{}}
	c.manifest = &record.SwarmManifest{Name: "api", Config: []byte("{}"), Coordinator: me.id.String(), InitialModel: fakeModelCID()}
	blk, err := record.Sign(me.key, c.manifest)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = st.Put(ctx, blk)
	_ = st.SetHead(ctx, storage.HeadSwarm, blk.Cid())
	c.swarmID = blk.Cid().String()
	c.head = Head{Swarm: c.swarmID, Manifest: c.swarmID, Round: -1}
	actx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	addr, err := c.serveAPI(actx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &apiCoordinator{c, "http://" + addr}
}

func (c *apiCoordinator) seal(t *testing.T, peer string) cid.Cid {
	t.Helper()
	ctx := context.Background()
	r := c.head.Round + 1
	base := c.manifest.InitialModel
	var prev *cid.Cid
	if pc, ok := c.byRound[r-1]; ok {
		prev = &pc
		b, _ := c.store.Get(ctx, pc)
		rec, _, _ := record.OpenBlock[record.RoundRecord](b)
		base = rec.Model
	}
	model, _ := payloadCID([]byte(fmt.Sprint("model", r)))
	rec := &record.RoundRecord{Swarm: c.swarmID, Round: r, Prev: prev, Base: base, Model: model,
		Entries: []record.Entry{{Peer: peer, Contribution: model, Payload: model, Verdict: "accepted", Score: float64(r)}}}
	blk, err := record.Sign(c.key, rec)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.store.Put(ctx, blk)
	_ = c.store.SetHead(ctx, storage.HeadLedger, blk.Cid())
	c.mu.Lock()
	c.byRound[r] = blk.Cid()
	c.head.Record, c.head.Round = blk.Cid().String(), r
	c.mu.Unlock()
	return blk.Cid()
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// TestPeerHistoryIsIndexed: /v1/peers/{id} answers from an index built
// as rounds are sealed, reading each record once — it used to walk and
// signature-check the whole ledger on every request, which a client could
// make cost the coordinator O(rounds) per request. The proof: after the
// index holds a record, that record is corrupted on disk, and the peer's
// history is still served (a walk would refuse the corrupt record), new
// rounds included.
func TestPeerHistoryIsIndexed(t *testing.T) {
	c := newAPICoordinator(t)
	p := newTestPeer(t).id.String()
	if code, _ := getJSON(t, c.url+"/v1/peers/"+p); code != http.StatusNotFound {
		t.Errorf("before round 0: %d", code)
	}
	var recs []cid.Cid
	for range 3 {
		recs = append(recs, c.seal(t, p))
	}
	code, body := getJSON(t, c.url+"/v1/peers/"+p)
	if code != http.StatusOK || len(body["rounds"].([]any)) != 3 {
		t.Fatalf("3 rounds: %d %v", code, body)
	}
	key := blockstore.BlockPrefix.Child(dshelp.MultihashToDsKey(recs[1].Hash()))
	if err := c.store.Datastore().Put(context.Background(), key, []byte("rotten")); err != nil {
		t.Fatal(err)
	}
	c.seal(t, p)
	code, body = getJSON(t, c.url+"/v1/peers/"+p)
	if code != http.StatusOK {
		t.Fatalf("after a new round, with an indexed record now unreadable: %d %v (the ledger was walked again)", code, body)
	}
	if n := len(body["rounds"].([]any)); n != 4 {
		t.Fatalf("%d rounds indexed, want 4", n)
	}
}

func TestAPIRateLimitAndTimeouts(t *testing.T) {
	srv := newAPIServer(nil)
	if srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.ReadHeaderTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Errorf("API server without a limit: %+v", srv)
	}
	saved := apiLimits
	t.Cleanup(func() { apiLimits = saved })
	apiLimits.idle, apiLimits.readHeader = 300*time.Millisecond, 300*time.Millisecond
	apiLimits.rate, apiLimits.burst = 0.001, 5
	c := newAPICoordinator(t)

	// A connection that never sends a request, and one left idle after
	// one, are both closed by the server.
	for _, first := range []string{"", "GET /v1/scores HTTP/1.1\r\nHost: x\r\n\r\n"} {
		conn, err := net.Dial("tcp", c.url[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		if first != "" {
			_, _ = conn.Write([]byte(first))
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Errorf("connection (first %q) not closed by the server: %v", first, err)
		}
	}

	codes := map[int]int{}
	for range 10 {
		code, _ := getJSON(t, c.url+"/v1/scores")
		codes[code]++
	}
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusOK] > apiLimits.burst {
		t.Errorf("10 requests against a burst of %d: %v", apiLimits.burst, codes)
	}
}
