package node

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/storage/record"
)

// The dashboard is plain HTML, CSS and JavaScript compiled into the
// binary: it works offline (no CDN) and needs no build step. It polls the
// JSON endpoints below; they are also for scripts.
//
//go:embed dashboard
var dashboardFiles embed.FS

// serveDashboard adds the dashboard page and the endpoints it reads to mux:
//
//	GET /                      the dashboard
//	GET /assets/{file}         its script and style sheet
//	GET /v1/rounds[?from=N]    every sealed round (from round N): counts, losses, accuracy, bytes against dense
//	GET /v1/peers              connected and scored peers, with connection kind and score
//	GET /v1/models/{cid}       a model of the ledger: its round and record
//	GET /v1/models/{cid}/file  its safetensors checkpoint
func (c *Coordinator) serveDashboard(mux *http.ServeMux) {
	assets, _ := fs.Sub(dashboardFiles, "dashboard") // a constant path of the embed: cannot fail
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// The page loads nothing but its own assets and the API: a record
		// field that found its way into the page as markup could run no
		// script and reach nothing.
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /v1/rounds", func(w http.ResponseWriter, r *http.Request) {
		// from lets a page that holds rounds 0..N-1 ask only for the new
		// ones: a long swarm's whole history every 2 s would grow without end.
		from := int64(0)
		if s := r.URL.Query().Get("from"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, fmt.Sprintf("from=%q: want a round number, 0 or more", s), http.StatusBadRequest)
				return
			}
			from = n
		}
		c.mu.Lock()
		// history is in round order.
		i, _ := slices.BinarySearchFunc(c.history, from, func(p RoundPoint, r int64) int { return cmp.Compare(p.Round, r) })
		out := RoundsResponse{Swarm: c.swarmID, Params: c.dense / 4, DenseBytes: c.dense, Rounds: slices.Clone(c.history[i:])}
		c.mu.Unlock()
		if c.manifest != nil {
			out.InitialModel = c.manifest.InitialModel.String()
		}
		if out.Rounds == nil {
			out.Rounds = []RoundPoint{}
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, PeersResponse{Swarm: c.swarmID, Peers: c.peers()})
	})
	mux.HandleFunc("GET /v1/models/{cid}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.ledgerModel(w, r)
		if !ok {
			return
		}
		writeJSON(w, m)
	})
	mux.HandleFunc("GET /v1/models/{cid}/file", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.ledgerModel(w, r)
		if !ok {
			return
		}
		mc, _ := cid.Decode(m.CID)
		f, err := c.openFile(r.Context(), mc)
		if err != nil {
			http.Error(w, fmt.Sprintf("model %s: %v", m.CID, err), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", modelFileName(m)))
		http.ServeContent(w, r, "", time.Time{}, f) // streamed from the store, ranges too
	})
}

// ledgerModel answers the {cid} of a /v1/models request: only models of
// this swarm's ledger are served, not whatever else the store holds.
func (c *Coordinator) ledgerModel(w http.ResponseWriter, r *http.Request) (ModelResponse, bool) {
	s := r.PathValue("cid")
	mc, err := cid.Decode(s)
	if err != nil {
		http.Error(w, fmt.Sprintf("model %q is not a CID: %v", s, err), http.StatusBadRequest)
		return ModelResponse{}, false
	}
	c.mu.Lock()
	rn, ok := c.models[mc]
	rc, sealed := c.byRound[rn]
	c.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("model %s is not in this swarm's ledger", mc), http.StatusNotFound)
		return ModelResponse{}, false
	}
	m := ModelResponse{CID: mc.String(), Round: rn, File: "/v1/models/" + mc.String() + "/file"}
	if sealed {
		m.Record = rc.String()
	}
	if f, err := c.openFile(r.Context(), mc); err == nil {
		m.Bytes = int(f.Size())
		f.Close()
	}
	return m, true
}

// openFile opens a UnixFS file of the store, offline: its size comes from
// the root block, its bytes are read as they are served.
func (c *Coordinator) openFile(ctx context.Context, fc cid.Cid) (uio.DagReader, error) {
	dag := merkledag.NewDAGService(blockservice.New(c.store.Blockstore(), nil))
	nd, err := dag.Get(ctx, fc)
	if err != nil {
		return nil, err
	}
	return uio.NewDagReader(ctx, nd, dag)
}

func modelFileName(m ModelResponse) string {
	if m.Round < 0 {
		return "model-initial.safetensors"
	}
	return fmt.Sprintf("model-round-%d.safetensors", m.Round)
}

// peers lists the peers the coordinator is connected to and those the
// ledger scores, sorted by ID.
func (c *Coordinator) peers() []PeerInfo {
	byID := map[string]*PeerInfo{}
	get := func(id string) *PeerInfo {
		if p, ok := byID[id]; ok {
			return p
		}
		p := &PeerInfo{Peer: id, Connection: ConnNone, Connections: []Conn{}}
		byID[id] = p
		return p
	}
	if c.net != nil {
		for _, conn := range c.net.Host.Network().Conns() {
			p := get(conn.RemotePeer().String())
			kind := connKind(conn.RemoteMultiaddr())
			p.Connections = append(p.Connections, Conn{Addr: conn.RemoteMultiaddr().String(), Kind: kind, Direction: direction(conn.Stat().Direction)})
			if kind == ConnDirect || p.Connection == ConnNone {
				p.Connection = kind
			}
		}
	}
	c.mu.Lock()
	for id, s := range c.scores {
		get(id).Score = &s
	}
	c.mu.Unlock()
	out := make([]PeerInfo, 0, len(byID))
	for _, p := range byID {
		slices.SortFunc(p.Connections, func(a, b Conn) int { return cmp.Compare(a.Addr, b.Addr) })
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return cmp.Compare(a.Peer, b.Peer) })
	return out
}

// connKind says whether a connection whose remote address is a goes
// through a circuit relay: a relayed connection's address is the relay's
// followed by /p2p-circuit (libp2p's circuit v2), a direct one's is the
// peer's own.
func connKind(a ma.Multiaddr) string {
	for _, p := range a {
		if p.Code() == ma.P_CIRCUIT {
			return ConnRelayed
		}
	}
	return ConnDirect
}

func direction(d network.Direction) string {
	switch d {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	}
	return "unknown"
}

// restoredPoint is what a round sealed before a restart shows: its
// record's counts, no losses or bytes.
func restoredPoint(rec *record.RoundRecord, at cid.Cid) RoundPoint {
	p := RoundPoint{RoundSummary: RoundSummary{Round: rec.Round, Record: at.String(), Model: rec.Model.String()}, Restored: true}
	for _, e := range rec.Entries {
		if e.Verdict == record.VerdictAccepted {
			p.Accepted++
		} else {
			p.Rejected++
		}
	}
	return p
}
