package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// serveAPI starts the coordinator's HTTP API on addr (127.0.0.1 by
// default: it is for the operator and local observers) and returns the
// address it listens on. It stops when ctx ends.
//
//	GET /v1/swarm           the manifest, the config, the head
//	GET /v1/rounds/latest   the latest round record
//	GET /v1/rounds/{n}      round n's record
//	GET /v1/scores          every peer's score
//	GET /v1/peers/{id}      one peer's rounds: verdicts, reasons, evidence, scores
//	GET /metrics            Prometheus metrics
//
// and the dashboard at / with the endpoints it reads (serveDashboard).
func (c *Coordinator) serveAPI(ctx context.Context, addr string) (string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/swarm", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, SwarmResponse{Swarm: c.swarmID, Manifest: c.manifest, Config: json.RawMessage(c.manifest.Config), Head: c.currentHead(), Peers: c.peerConns()})
	})
	mux.HandleFunc("GET /v1/rounds/{n}", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		round := c.head.Round
		c.mu.Unlock()
		if s := r.PathValue("n"); s != "latest" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				http.Error(w, "round must be a number or latest", http.StatusBadRequest)
				return
			}
			round = n
		}
		c.mu.Lock()
		rc, ok := c.byRound[round]
		c.mu.Unlock()
		if !ok && round < 0 {
			http.Error(w, "no round sealed yet", http.StatusNotFound)
			return
		}
		if !ok {
			http.Error(w, fmt.Sprintf("no sealed round %d", round), http.StatusNotFound)
			return
		}
		rec, err := c.loadRecord(r.Context(), rc)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, RoundResponse{CID: rc.String(), Record: rec})
	})
	mux.HandleFunc("GET /v1/scores", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		out := make([]record.PeerScore, 0, len(c.scores))
		for _, s := range c.scores {
			out = append(out, s)
		}
		c.mu.Unlock()
		slices.SortFunc(out, func(a, b record.PeerScore) int { return cmp.Compare(a.Peer, b.Peer) })
		writeJSON(w, ScoresResponse{Swarm: c.swarmID, Scores: out})
	})
	index := &peerIndex{}
	mux.HandleFunc("GET /v1/peers/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		hist, err := index.history(r.Context(), c, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if len(hist) == 0 {
			http.Error(w, fmt.Sprintf("peer %s has no contribution in the ledger", id), http.StatusNotFound)
			return
		}
		writeJSON(w, PeerResponse{Swarm: c.swarmID, Peer: id, Rounds: hist})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	c.serveDashboard(mux)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("api.listen %s: %w", addr, err)
	}
	srv := newAPIServer(rateLimited(mux, rate.NewLimiter(rate.Limit(apiLimits.rate), apiLimits.burst)))
	// Both goroutines belong to the coordinator (c.wg): Close waits for the
	// server to stop before it closes the store the handlers read.
	c.wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	c.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Warn("api", "err", err)
		}
	})
	return ln.Addr().String(), nil
}

// apiLimits are the HTTP API's defaults. The API is for the operator and
// local observers, answers in milliseconds from memory, and must not be
// held open by a client that sends or reads slowly or keeps idle
// connections (each costs a goroutine and a file descriptor).
var apiLimits = struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
	rate                          float64 // requests per second, all clients together
	burst                         int
}{
	readHeader: 5 * time.Second,  // a request line and headers from a live client
	read:       10 * time.Second, // GETs have no body
	write:      30 * time.Second, // the largest answer, a round record of a big swarm, is a few MB
	idle:       60 * time.Second, // a keep-alive connection between scrapes
	// Headers are a few hundred bytes; http's default allows 1 MiB.
	maxHeaderBytes: 16 << 10,
	// A dashboard or a Prometheus scrape asks a few times a second; past
	// this, requests are answered 429 at once, not queued.
	rate:  50,
	burst: 100,
}

func newAPIServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: apiLimits.readHeader,
		ReadTimeout:       apiLimits.read,
		WriteTimeout:      apiLimits.write,
		IdleTimeout:       apiLimits.idle,
		MaxHeaderBytes:    apiLimits.maxHeaderBytes,
	}
}

// rateLimited answers 429 to requests past the limiter's rate.
func rateLimited(h http.Handler, lim *rate.Limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lim.Allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// peerIndex is every peer's history in the coordinator's ledger, built
// from the records the coordinator sealed and extended as the head moves:
// each record is read and verified once, when first indexed, not on every
// /v1/peers request (which walked and signature-checked the whole ledger).
type peerIndex struct {
	mu    sync.Mutex
	head  string // the ledger head indexed so far ("" before round 0)
	peers map[string][]verify.PeerRound
}

// history returns peer's rounds, oldest first, indexing the records
// sealed since the last call.
func (x *peerIndex) history(ctx context.Context, c *Coordinator, peer string) ([]verify.PeerRound, error) {
	c.mu.Lock()
	head := c.head.Record
	c.mu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if head != "" && head != x.head {
		if err := x.extend(ctx, c, head); err != nil {
			return nil, err
		}
	}
	return slices.Clone(x.peers[peer]), nil
}

// extend indexes the records from head back to the last indexed one.
func (x *peerIndex) extend(ctx context.Context, c *Coordinator, head string) error {
	hc, err := cid.Decode(head)
	if err != nil {
		return fmt.Errorf("ledger head %q: %w", head, err)
	}
	var fresh []*record.RoundRecord
	var cids []cid.Cid
	for at := &hc; at != nil && at.String() != x.head; {
		rec, err := c.loadRecord(ctx, *at)
		if err != nil {
			return fmt.Errorf("ledger record %s: %w", *at, err)
		}
		fresh = append(fresh, rec)
		cids = append(cids, *at)
		at = rec.Prev
	}
	if x.peers == nil {
		x.peers = map[string][]verify.PeerRound{}
	}
	for i := len(fresh) - 1; i >= 0; i-- {
		rec := fresh[i]
		for _, e := range rec.Entries {
			x.peers[e.Peer] = append(x.peers[e.Peer], verify.PeerRoundOf(rec, cids[i], e))
		}
	}
	x.head = head
	return nil
}

func (c *Coordinator) loadRecord(ctx context.Context, rc cid.Cid) (*record.RoundRecord, error) {
	b, err := c.store.Get(ctx, rc)
	if err != nil {
		return nil, err
	}
	rec, _, err := record.OpenBlock[record.RoundRecord](b)
	return rec, err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// peerConns are the coordinator's connected and scored peers, sorted by
// ID, with the path to each.
func (c *Coordinator) peerConns() []PeerConn {
	ids := map[peer.ID]bool{}
	for _, p := range c.net.Host.Network().Peers() {
		ids[p] = true
	}
	c.mu.Lock()
	for _, s := range c.scores {
		if p, err := peer.Decode(s.Peer); err == nil {
			ids[p] = true
		}
	}
	c.mu.Unlock()
	out := make([]PeerConn, 0, len(ids))
	for p := range ids {
		path, punched := c.PeerPath(p)
		out = append(out, PeerConn{Peer: p.String(), Path: string(path), HolePunched: punched})
	}
	slices.SortFunc(out, func(a, b PeerConn) int { return cmp.Compare(a.Peer, b.Peer) })
	return out
}
