package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// chromium finds a Chromium to drive. Where there is none the test skips,
// unless SWARMTRAIN_INTEROP=required (CI sets it, having installed one):
// then it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH (Debian: apt-get install chromium)"
	if os.Getenv("SWARMTRAIN_INTEROP") == "required" {
		t.Fatal(msg + "; SWARMTRAIN_INTEROP=required")
	}
	t.Skip(msg + "; SWARMTRAIN_INTEROP=required turns this skip into a failure")
	return ""
}

// pageFigures is what the dashboard shows, read from the DOM: every point
// of every curve and every row of the scores table.
type pageFigures struct {
	Points []struct {
		Chart, Series string
		Round         int64
		Value, CY     float64
	}
	Scores []struct {
		Peer, ScoreText, Reasons string
		Score                    float64
		Accepted, Rejected       int64
	}
	Accuracy string // the accuracy card
	Peers    []struct{ Peer, Connection string }
}

const readPage = `({
  points: [...document.querySelectorAll("svg circle[data-round]")].map((c) => ({
    chart: c.closest("svg").id, series: c.parentNode.dataset.series,
    round: +c.dataset.round, value: +c.dataset.value, cy: +c.getAttribute("cy") })),
  scores: [...document.querySelectorAll("#scores tbody tr")].map((tr) => ({
    peer: tr.dataset.peer, score: +tr.querySelector(".score").dataset.value,
    scoreText: tr.querySelector(".score").textContent,
    accepted: +tr.querySelector(".accepted").textContent, rejected: +tr.querySelector(".rejected").textContent,
    reasons: tr.querySelector(".reasons").textContent })),
  accuracy: document.getElementById("card-accuracy").textContent,
  peers: [...document.querySelectorAll("#peers tbody tr")].map((tr) => ({
    peer: tr.dataset.peer, connection: tr.querySelector(".connection").textContent })),
})`

// TestDashboardInChromium runs a coordinator, three honest contributors
// and one peer that sends its update x1000 on one mocknet, and headless
// Chromium on the coordinator's dashboard, opened before any round is
// sealed: the page follows the swarm live to its last round; then every
// point of every curve, every cell of the scores table and the accuracy
// card are compared with the API's own figures (and those with what the
// coordinator reported), the ledger browser shows the cheater's rejection
// with its reason, and a screenshot is saved where the log says
// (SWARMTRAIN_DASHBOARD_PNG, else the temp dir).
func TestDashboardInChromium(t *testing.T) {
	if raceEnabled {
		t.Skip("a whole swarm and a browser: the API handlers' concurrency is covered by TestRoundsOnMocknet under -race")
	}
	chrome := chromium(t)
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// make test-long's run makes the screenshot in the README.
	const honest = 3
	rounds := 3
	if !testing.Short() {
		rounds = 10
	}
	sc := smallSwarm(rounds, honest+1)
	sc.Round.Deadline = config.Duration(10 * time.Second)

	tn := newTestNet(t)
	apic := make(chan string, 1)
	var mu sync.Mutex
	var sealed []RoundSummary
	coord, err := NewCoordinator(CoordinatorConfig{Swarm: sc, DataDir: t.TempDir(), Train: trainSet, Test: testSet.Head(1000), Log: quietLog,
		Ready: func(_ string, _ []string, api string) { apic <- "http://" + api },
		RoundDone: func(s RoundSummary) {
			mu.Lock()
			sealed = append(sealed, s)
			mu.Unlock()
		}}, WithHost(tn.host(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	api := <-apic

	// The browser opens the page before any round is sealed.
	actx, stopBrowser := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	defer stopBrowser()
	bctx, closeTab := chromedp.NewContext(actx)
	defer closeTab()
	if err := chromedp.Do(bctx, chromedp.Navigate(api+"/")); err != nil {
		t.Fatalf("chromium %s: %v", chrome, err)
	}
	if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`document.body.dataset.rounds === "0"`)); err != nil {
		t.Fatalf("the page never showed the swarm before round 0: %v", err)
	}

	swarm, addr := coord.SwarmID(), coord.Addrs()[0]
	advCtx, stopAdv := context.WithCancel(ctx)
	defer stopAdv()
	var wg sync.WaitGroup
	errs := make(chan error, honest+1)
	var cheater string
	for i := range honest + 1 {
		h := tn.host(t, nil)
		dir := t.TempDir()
		if i == honest {
			cheater = h.ID().String()
			wg.Go(func() {
				if err := runAttacker(advCtx, h, dir, swarm, addr, trainSet, scaleAdversary{}); err != nil && advCtx.Err() == nil {
					errs <- fmt.Errorf("attacker: %w", err)
				}
			})
			continue
		}
		wg.Go(func() {
			if err := RunContributor(ctx, ContributorConfig{SwarmID: swarm, Bootstrap: []string{addr}, DataDir: dir, Train: trainSet, Log: quietLog}, WithHost(h)); err != nil {
				errs <- fmt.Errorf("contributor %s: %w", h.ID(), err)
			}
		})
	}
	// The page follows the swarm to its last round by itself.
	if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.body.dataset.rounds === "%d"`, rounds),
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(3*time.Minute))); err != nil {
		mu.Lock()
		t.Fatalf("the page never showed round %d (%d sealed): %v", rounds-1, len(sealed), err)
	}
	// One more poll, begun after the last seal, so that the page and the
	// API below read the same final state.
	polls, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.dataset.polls`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(`+document.body.dataset.polls > %s + 1`, polls),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatal(err)
	}
	stopAdv()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var rs RoundsResponse
	var sr ScoresResponse
	var pr PeersResponse
	for path, v := range map[string]any{"/v1/rounds": &rs, "/v1/scores": &sr, "/v1/peers": &pr} {
		if err := apiGet(api+path, v); err != nil {
			t.Fatal(err)
		}
	}
	page, err := chromedp.Run(bctx, chromedp.Evaluate[pageFigures](readPage))
	if err != nil {
		t.Fatal(err)
	}

	// The API's rounds are the coordinator's.
	mu.Lock()
	if len(rs.Rounds) != rounds || len(sealed) != rounds {
		t.Fatalf("/v1/rounds has %d rounds, the coordinator sealed %d, want %d", len(rs.Rounds), len(sealed), rounds)
	}
	for i, p := range rs.Rounds {
		if p.RoundSummary != sealed[i] || !p.Evaluated || p.Restored || p.DenseBytes != p.Payloads*rs.DenseBytes {
			t.Errorf("/v1/rounds round %d: %+v, the coordinator reported %+v", i, p, sealed[i])
		}
	}
	mu.Unlock()
	if rs.DenseBytes != 4*rs.Params {
		t.Errorf("dense bytes %d for %d parameters", rs.DenseBytes, rs.Params)
	}

	// Every curve point is the API's figure, and higher values are drawn higher.
	want := map[string]func(RoundPoint) float64{
		"chart-accuracy/test_accuracy": func(p RoundPoint) float64 { return p.TestAccuracy },
		"chart-loss/test_loss":         func(p RoundPoint) float64 { return p.TestLoss },
		"chart-loss/train_loss":        func(p RoundPoint) float64 { return p.MeanLoss },
		"chart-bytes/bytes_in":         func(p RoundPoint) float64 { return float64(p.BytesIn) },
		"chart-bytes/dense_bytes":      func(p RoundPoint) float64 { return float64(p.DenseBytes) },
	}
	drawn := map[string]map[int64]float64{}
	cy := map[string]map[int64]float64{}
	for _, p := range page.Points {
		k := p.Chart + "/" + p.Series
		if drawn[k] == nil {
			drawn[k], cy[k] = map[int64]float64{}, map[int64]float64{}
		}
		drawn[k][p.Round], cy[k][p.Round] = p.Value, p.CY
	}
	for k, f := range want {
		if len(drawn[k]) != rounds {
			t.Errorf("%s: %d points drawn, want %d", k, len(drawn[k]), rounds)
		}
		for _, p := range rs.Rounds {
			if got, ok := drawn[k][p.Round]; !ok || got != f(p) {
				t.Errorf("%s round %d: drawn %v, the API says %v", k, p.Round, got, f(p))
			}
			for _, q := range rs.Rounds {
				if f(p) > f(q) && cy[k][p.Round] >= cy[k][q.Round] {
					t.Errorf("%s: round %d (%v) is drawn at y %v, not above round %d (%v) at y %v", k, p.Round, f(p), cy[k][p.Round], q.Round, f(q), cy[k][q.Round])
				}
			}
		}
	}
	if last := rs.Rounds[rounds-1].TestAccuracy; page.Accuracy != fmt.Sprintf("%.2f %%", 100*last) {
		t.Errorf("accuracy card %q, the API says %v", page.Accuracy, last)
	}

	// Every score cell is the API's, the cheater's rejections show their
	// reason, and it ranks below every honest peer.
	if len(page.Scores) != len(sr.Scores) || len(sr.Scores) != honest+1 {
		t.Fatalf("scores table has %d rows, the API %d, want %d", len(page.Scores), len(sr.Scores), honest+1)
	}
	api2 := map[string]int{}
	for i, s := range sr.Scores {
		api2[s.Peer] = i
	}
	for i, row := range page.Scores {
		j, ok := api2[row.Peer]
		if !ok {
			t.Errorf("scores row %d: peer %s is not in /v1/scores", i, row.Peer)
			continue
		}
		s := sr.Scores[j]
		var reasons []string
		if s.Rejections != nil {
			for _, rc := range *s.Rejections {
				reasons = append(reasons, fmt.Sprintf("%s ×%d", rc.Reason, rc.Count))
			}
		}
		if row.Score != s.Score || row.ScoreText != fmt.Sprintf("%.3f", s.Score) || row.Accepted != s.Accepted || row.Rejected != s.Rejected || row.Reasons != strings.Join(reasons, ", ") {
			t.Errorf("scores row of %s: %+v, the API says %+v (reasons %q)", row.Peer, row, s, reasons)
		}
		if (row.Peer == cheater) != (i == len(page.Scores)-1) {
			t.Errorf("scores row %d is %s; the cheater %s must be last", i, row.Peer, cheater)
		}
		if row.Peer == cheater && (row.Rejected == 0 || !strings.Contains(row.Reasons, verify.ReasonNorm+" ×")) {
			t.Errorf("the cheater's row shows no norm rejection: %+v", row)
		}
	}
	// The peers table shows what /v1/peers says; on a mocknet every
	// connection is direct.
	if len(page.Peers) == 0 {
		t.Error("the peers table is empty")
	}
	for _, p := range page.Peers {
		if p.Connection != ConnDirect {
			t.Errorf("peer %s: connection %q on a mocknet, want direct", p.Peer, p.Connection)
		}
	}

	// The ledger browser opens round 0: the cheater's entry is rejected
	// with the norm reason and its evidence.
	entry, err := chromedp.Run(bctx, func(ctx context.Context, tg *chromedp.Target) (string, error) {
		if _, err := chromedp.Click(chromedp.CSS(`#rounds tbody tr[data-round="0"]`))(ctx, tg); err != nil {
			return "", err
		}
		sel := fmt.Sprintf(`#entries tr[data-peer=%q]`, cheater)
		return chromedp.Poll[string](fmt.Sprintf(`document.querySelector(%q) && document.querySelector(%q).textContent`, sel, sel),
			chromedp.WithPollingTimeout(10*time.Second))(ctx, tg)
	})
	if err != nil || !strings.Contains(entry, "rejected") || !strings.Contains(entry, verify.ReasonNorm) {
		t.Errorf("ledger browser, round 0, the cheater's entry: %q (%v)", entry, err)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("SWARMTRAIN_DASHBOARD_PNG")
	if out == "" {
		out = filepath.Join(os.TempDir(), "swarmtrain-dashboard.png")
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the dashboard (%d bytes): %s", len(png), out)
	rows := make([]string, 0, len(page.Scores))
	for _, s := range page.Scores {
		rows = append(rows, fmt.Sprintf("%s %s rejected %d (%s)", s.Peer[len(s.Peer)-6:], s.ScoreText, s.Rejected, s.Reasons))
	}
	sort.Strings(rows)
	t.Logf("accuracy %s; scores: %s", page.Accuracy, strings.Join(rows, "; "))
}

func apiGet(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestConnKind(t *testing.T) {
	for addr, want := range map[string]string{
		"/ip4/203.0.113.7/tcp/4001":         ConnDirect,
		"/ip4/203.0.113.7/udp/4001/quic-v1": ConnDirect,
		"/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo/p2p-circuit":        ConnRelayed,
		"/ip6/2001:db8::1/udp/4001/quic-v1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo/p2p-circuit": ConnRelayed,
	} {
		if got := connKind(ma.StringCast(addr)); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

// TestPeersConnectionKind: /v1/peers tells a relayed connection from a
// direct one on real libp2p hosts: the coordinator reaches a peer behind
// a circuit relay only through /p2p-circuit, and the relay itself directly.
func TestPeersConnectionKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newHost := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	relayHost, behind, coordHost := newHost(), newHost(), newHost()
	r, err := relay.New(relayHost)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	relayInfo := peer.AddrInfo{ID: relayHost.ID(), Addrs: relayHost.Addrs()}
	if err := behind.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Reserve(ctx, behind, relayInfo); err != nil {
		t.Fatal(err)
	}
	circuit := ma.StringCast(fmt.Sprintf("/p2p/%s/p2p-circuit", relayHost.ID()))
	if err := coordHost.Connect(ctx, relayInfo); err != nil {
		t.Fatal(err)
	}
	if err := coordHost.Connect(ctx, peer.AddrInfo{ID: behind.ID(), Addrs: []ma.Multiaddr{relayHost.Addrs()[0].Encapsulate(circuit)}}); err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{base: &base{net: &p2p.Node{Host: coordHost}}, scores: map[string]record.PeerScore{
		behind.ID().String(): {Peer: behind.ID().String(), Score: 0.25, Accepted: 1},
	}}
	got := map[string]PeerInfo{}
	for _, p := range c.peers() {
		got[p.Peer] = p
	}
	if p := got[relayHost.ID().String()]; p.Connection != ConnDirect || p.Score != nil {
		t.Errorf("the relay: %+v, want direct and no score", p)
	}
	p := got[behind.ID().String()]
	if p.Connection != ConnRelayed || len(p.Connections) != 1 || p.Connections[0].Kind != ConnRelayed || p.Score == nil || p.Score.Score != 0.25 {
		t.Errorf("the peer behind the relay: %+v, want one relayed connection and its score", p)
	}
	t.Logf("relayed: %s", p.Connections[0].Addr)
}

// TestRestoredRounds: a round sealed before a restart shows its record's
// counts and says it was restored (its losses and bytes were never in the
// record, so none are made up).
func TestRestoredRounds(t *testing.T) {
	m := fakeModelCID()
	rec := &record.RoundRecord{Round: 4, Model: m, Entries: []record.Entry{
		{Verdict: record.VerdictAccepted}, {Verdict: record.VerdictAccepted}, {Verdict: record.VerdictRejected, Reason: verify.ReasonNorm}}}
	p := restoredPoint(rec, m)
	want := RoundPoint{RoundSummary: RoundSummary{Round: 4, Record: m.String(), Model: m.String(), Accepted: 2, Rejected: 1}, Restored: true}
	if p != want {
		t.Errorf("restored point %+v, want %+v", p, want)
	}
}
