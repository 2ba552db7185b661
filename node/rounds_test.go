package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// leakSlack is how many goroutines may outlive the nodes (runtime or
// library ones started once per process); measured: none do.
const leakSlack = 2

func smallSwarm(rounds, quorum int) *config.Swarm {
	sc := config.Default()
	sc.Name = "test"
	sc.Model.Hidden = []int{32}
	sc.Train.Rounds = rounds
	// 20 steps at 10 % density: with 5 steps at 1 % an honest update's
	// own-shard gain sat at 0.42x-0.49x of the round's reference, close
	// enough to tier 2's 0.35 that a draw of peer IDs now and then fell
	// under it (verify.ReferenceFraction); this test is about the protocol.
	sc.Train.InnerSteps = 20
	sc.Compression.Density = 0.1
	sc.Train.ShardSize = 500
	sc.Round.Quorum = quorum
	sc.Round.Deadline = config.Duration(20 * time.Second)
	sc.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	sc.API.Listen = "127.0.0.1:0"
	return sc
}

// TestRoundsOnMocknet runs a coordinator and three contributors in one
// process on a mocknet: every round seals with all three, every
// contributor's replayed model hashes to the record's, the API serves the
// scores, and no goroutine outlives the nodes.
func TestRoundsOnMocknet(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	goroutinesBefore := runtime.NumGoroutine()
	const peers, rounds = 3, 3
	sc := smallSwarm(rounds, peers)

	type ready struct {
		id, addr, api string
	}
	readyc := make(chan ready, 1)
	var mu sync.Mutex
	var sealed []RoundSummary
	var apiURL, lastModel string
	testCID := fakeModelCID().String() // a CID no ledger holds
	apiBodies := map[string]string{}
	// checkAPI reads every endpoint while the coordinator still runs.
	checkAPI := func() {
		for _, path := range []string{"/v1/swarm", "/v1/rounds/latest", "/v1/rounds/0", "/v1/scores", "/metrics", "/v1/rounds/99",
			"/v1/rounds", "/v1/rounds?from=2", "/v1/rounds?from=-1", "/v1/peers", "/", "/v1/models/" + lastModel + "/file", "/v1/models/" + lastModel, "/v1/models/nonsense", "/v1/models/" + testCID} {
			resp, err := http.Get("http://" + apiURL + path)
			if err != nil {
				apiBodies[path] = "error: " + err.Error()
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			apiBodies[path] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
	}
	tn := newTestNet(t)
	coordDir := t.TempDir()
	coord, err := NewCoordinator(CoordinatorConfig{Swarm: sc, DataDir: coordDir, Train: trainSet, Test: testSet.Head(1000), ExitWhenDone: true, Log: quietLog,
		Ready: func(id string, addrs []string, api string) { apiURL = api; readyc <- ready{id, addrs[0], api} },
		RoundDone: func(s RoundSummary) {
			if s.Round == rounds-1 {
				lastModel = s.Model
				checkAPI()
			}
			t.Logf("%s sealed round %d: %d accepted (%s)", time.Now().Format("15:04:05.000"), s.Round, s.Accepted, s.SealedBy)
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
	rd := <-readyc
	models := make([]map[int64]cid.Cid, peers)
	matched := make([]map[int64]bool, peers)
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	for i := 0; i < peers; i++ {
		models[i], matched[i] = map[int64]cid.Cid{}, map[int64]bool{}
		h := tn.host(t, nil)
		dir := t.TempDir()
		wg.Go(func() {
			err := RunContributor(ctx, ContributorConfig{SwarmID: rd.id, Bootstrap: []string{rd.addr}, DataDir: dir, Train: trainSet, Log: quietLog,
				Event: func(ev Event) {
					if a, ok := ev.(Applied); ok {
						mu.Lock()
						models[i][a.Round], matched[i][a.Round] = a.Model, a.Replayed
						mu.Unlock()
					}
				}}, WithHost(h))
			if err != nil {
				errs <- fmt.Errorf("contributor %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	<-coord.Done()
	if err := coord.Err(); err != nil {
		t.Fatal(err)
	}
	coord.Close()
	tn.mn.Close()
	if len(sealed) != rounds {
		t.Fatalf("%d rounds sealed, want %d", len(sealed), rounds)
	}
	// Every node has returned: their goroutines must be gone.
	http.DefaultClient.CloseIdleConnections() // the API reads above
	checkNoLeak(t, goroutinesBefore)
	for _, s := range sealed {
		if s.Accepted != peers {
			t.Errorf("round %d: %d accepted, want %d: %v", s.Round, s.Accepted, peers, rejections(t, coordDir, s.Record))
		}
		for i := range models {
			if models[i][s.Round].String() != s.Model || !matched[i][s.Round] {
				t.Errorf("contributor %d round %d: model %s (replay matched: %v), record says %s", i, s.Round, models[i][s.Round], matched[i][s.Round], s.Model)
			}
		}
	}
	t.Logf("final test accuracy %.3f", sealed[len(sealed)-1].TestAccuracy)
	if b := apiBodies["/v1/rounds?from=2"]; !strings.Contains(b, `"round": 2`) || strings.Contains(b, `"round": 1`) {
		t.Errorf("/v1/rounds?from=2: %.400s", b)
	}
	// The dashboard's download link serves the model file the ledger names.
	if file, ok := strings.CutPrefix(apiBodies["/v1/models/"+lastModel+"/file"], "200 "); !ok {
		t.Errorf("/v1/models/{cid}/file: %.200s", apiBodies["/v1/models/"+lastModel+"/file"])
	} else if got, err := storage.FileCID([]byte(file)); err != nil || got.String() != lastModel {
		t.Errorf("/v1/models/%s/file served %d bytes hashing to %s (%v)", lastModel, len(file), got, err)
	}
	var latest struct {
		CID    string                `json:"cid"`
		Record struct{ Round int64 } `json:"record"`
	}
	body := apiBodies["/v1/rounds/latest"]
	if !strings.HasPrefix(body, "200 ") || json.Unmarshal([]byte(body[4:]), &latest) != nil || latest.CID != sealed[rounds-1].Record || latest.Record.Round != rounds-1 {
		t.Errorf("/v1/rounds/latest: %.300s", body)
	}
	for path, want := range map[string]string{"/v1/swarm": `"swarm": "` + rd.id, "/v1/rounds/0": `"cid": "` + sealed[0].Record,
		"/v1/scores": `"accepted": 3`, "/metrics": "swarmtrain_rounds_sealed_total 3", "/v1/rounds/99": "404 ",
		"/v1/rounds": `"evaluated": true`, "/v1/rounds?from=-1": "400 ", "/v1/peers": `"connection": "direct"`, "/": "<title>swarmtrain</title>",
		"/v1/models/" + lastModel: `"round": 2`, "/v1/models/nonsense": "400 ", "/v1/models/" + testCID: "404 "} {
		if !strings.Contains(apiBodies[path], want) {
			t.Errorf("%s: want %q in %.300s", path, want, apiBodies[path])
		}
	}
}

// rejections lists the reasons in a stopped coordinator's record.
func rejections(t *testing.T, dir, rc string) []string {
	store, err := storage.Open(dir)
	if err != nil {
		return []string{err.Error()}
	}
	defer store.Close()
	c, _ := cid.Decode(rc)
	b, err := store.Get(context.Background(), c)
	if err != nil {
		return []string{err.Error()}
	}
	rec, _, err := record.OpenBlock[record.RoundRecord](b)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range rec.Entries {
		if e.Reason != "" {
			out = append(out, e.Reason)
		}
	}
	return out
}

// checkNoLeak waits (with a deadline) for the goroutine count to fall back
// to before+leakSlack once every role has been closed, and fails with
// every goroutine's stack if it does not.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before+leakSlack && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+leakSlack {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the swarm, %d after every node returned:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	} else {
		t.Logf("goroutines: %d before, %d after", before, n)
	}
}
