package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
func (c *Coordinator) serveAPI(ctx context.Context, addr string) (string, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/swarm", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"swarm": c.swarmID, "manifest": c.manifest, "config": json.RawMessage(c.manifest.Config), "head": c.currentHead()})
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
		if !ok {
			http.Error(w, fmt.Sprintf("no sealed round %d", round), http.StatusNotFound)
			return
		}
		rec, err := c.loadRecord(r.Context(), rc)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"cid": rc.String(), "record": rec})
	})
	mux.HandleFunc("GET /v1/scores", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		out := make([]record.PeerScore, 0, len(c.scores))
		for _, s := range c.scores {
			out = append(out, s)
		}
		c.mu.Unlock()
		writeJSON(w, map[string]any{"swarm": c.swarmID, "scores": out})
	})
	mux.HandleFunc("GET /v1/peers/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		hist, err := verify.PeerHistory(r.Context(), c.store, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if len(hist) == 0 {
			http.Error(w, fmt.Sprintf("peer %s has no contribution in the ledger", id), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"swarm": c.swarmID, "peer": id, "rounds": hist})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("api.listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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
