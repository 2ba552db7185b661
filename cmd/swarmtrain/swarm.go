package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

func newStartCmd(e *env) *cobra.Command {
	var cfgPath, dataDir, datasetFlag, eventsPath string
	var listen []string
	var exitWhenDone bool
	cmd := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Start a swarm as its coordinator (a researcher's command)",
		Long: `start defines a swarm from a config, prints its ID and the join command for
contributors, then checks, aggregates and seals every round, printing one line
per round and the round's model CID. Restarted on the same --data-dir it
resumes after the last sealed round. After the last round it keeps serving the
ledger, the models and the API (export, scores, ledger --bootstrap) until
interrupted, unless --exit-when-done.

--events FILE writes machine-readable events, one JSON object per line:
ready {swarm, name, addrs, api, data_dir}; round_sealed {round, record, model,
accepted, rejected, train_loss, test_loss, test_accuracy, bytes_in, seal_ms};
done {swarm, rounds, record, model}; stopped {error}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if len(listen) > 0 {
				cfg.Network.Listen = listen
			}
			dsDir, why := datasetDir(cfg, datasetFlag, cfgPath)
			trainSet, testSet, err := loadDataset(cfg, dsDir, why)
			if err != nil {
				return err
			}
			if testSet.IsText() {
				// Every seal evaluates the model on the test set: a text's
				// held-out tail (Brown: 9,348 windows) would take longer
				// than the round; its first windows are the round's figure.
				testSet = testSet.Head(coordinatorTextWindows)
			}
			if dataDir == "" {
				dataDir = defaultNodeDir("coordinator")
			}
			if err := checkNodeDirFree(dataDir, "coordinator"); err != nil {
				return err
			}
			events, err := openEventLog(eventsPath, e.log)
			if err != nil {
				return err
			}
			defer events.close()
			undo := claimNodeDir(dataDir)
			w := &coordinatorWatch{e: e, cfg: cfg, cfgPath: cfgPath, dataDir: dataDir, events: events}
			err = node.RunCoordinator(cmd.Context(), node.CoordinatorConfig{
				Swarm: cfg, DataDir: dataDir, Train: trainSet, Test: testSet, Log: e.log,
				Ready: w.ready, RoundDone: w.roundDone, Event: func(ev node.Event) { eventLine(e.stdout, ev) }, ExitWhenDone: exitWhenDone,
			})
			msg := ""
			if err != nil && !interrupted(cmd) {
				msg = errorLine(err)
			}
			events.emit(stoppedEvent{Type: "stopped", Error: msg})
			if !w.isReady() && (err != nil || interrupted(cmd)) {
				undo() // nothing anyone could use was made: leave no key behind
			}
			if interrupted(cmd) {
				fmt.Fprintln(e.stdout, w.savedLine())
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "swarm config (YAML); see examples/")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the coordinator's directory: identity, blocks, ledger (default ~/.swarmtrain/coordinator)")
	addDatasetFlag(cmd.Flags(), &datasetFlag, "mnist-dir")
	cmd.Flags().StringSliceVar(&listen, "listen", nil, "listen multiaddrs (override network.listen)")
	cmd.Flags().StringVar(&eventsPath, "events", "", "write machine-readable events to FILE, one JSON object per line")
	cmd.Flags().BoolVar(&exitWhenDone, "exit-when-done", false, "exit once the last round is sealed instead of serving the swarm until interrupted")
	cmd.MarkFlagRequired("config")
	return cmd
}

// coordinatorWatch turns the coordinator's callbacks into what start
// prints and the events it writes, and says when rounds stall.
type coordinatorWatch struct {
	e       *env
	cfg     *config.Swarm
	cfgPath string
	dataDir string
	events  *eventLog

	mu        sync.Mutex
	swarm     string
	addr      string // the address printed for contributors
	warnedLow bool
}

func (w *coordinatorWatch) ready(id string, addrs []string, api string) {
	w.mu.Lock()
	w.swarm, w.addr = id, pickAddr(addrs)
	w.mu.Unlock()
	out, sc := w.e.stdout, w.cfg
	fmt.Fprintf(out, "swarm %s (%s) started; data dir %s\n", id, sc.Name, w.dataDir)
	if api != "" {
		fmt.Fprintf(out, "api: http://%s/v1/swarm\n", api)
		fmt.Fprintf(out, "dashboard: http://%s/\n", api)
	}
	fmt.Fprintf(out, "rounds seal once %d contributors have sent an update (round.quorum), or at the %s deadline (round.deadline) with at least %d\n",
		sc.Round.Quorum, sc.Round.Deadline.D(), sc.Round.MinContributions)
	fmt.Fprintf(out, "contributors join with (one line per contributor; each needs its own --data-dir):\n  %s join %s --bootstrap %s --data-dir ./peer1\n", invokedAs(), id, w.addr)
	w.events.emit(readyEvent{Type: "ready", Swarm: id, Name: sc.Name, Addrs: addrs, API: api, DataDir: w.dataDir})
}

func (w *coordinatorWatch) isReady() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.swarm != ""
}

func (w *coordinatorWatch) roundDone(s node.RoundSummary) {
	sc := w.cfg
	roundLine(w.e.stdout, s, w.cfg.Model.Kind == "transformer")
	w.events.emit(newRoundSealedEvent(s))
	w.mu.Lock()
	warn := !w.warnedLow && s.SealedBy == node.SealedByDeadline && s.Accepted+s.Rejected < sc.Round.Quorum
	w.warnedLow = w.warnedLow || warn
	swarm, addr := w.swarm, w.addr
	w.mu.Unlock()
	if warn {
		// Fewer contributions than the quorum means the round waited for
		// its deadline; with this many contributors every round will.
		fmt.Fprintf(w.e.stderr, "swarmtrain: warning: round %d sealed at its %s deadline with %d contributions, fewer than round.quorum %d: every round will wait the full deadline until %d contributors take part (or lower round.quorum in %s)\n",
			s.Round, sc.Round.Deadline.D(), s.Accepted+s.Rejected, sc.Round.Quorum, sc.Round.Quorum, w.cfgPath)
	}
	if s.Round == int64(sc.Train.Rounds)-1 {
		fmt.Fprintf(w.e.stdout, "final model %s; export it with: %s export %s -o model.safetensors --bootstrap %s\n", s.Model, invokedAs(), s.Model, addr)
		w.events.emit(doneEvent{Type: "done", Swarm: swarm, Rounds: sc.Train.Rounds, Record: s.Record, Model: s.Model})
	}
}

// savedLine says, after an interrupt, what the coordinator's directory
// holds: read back from the store, which is closed by now.
func (w *coordinatorWatch) savedLine() string {
	w.mu.Lock()
	swarm := w.swarm
	w.mu.Unlock()
	if swarm == "" {
		return "interrupted before the swarm started; nothing saved"
	}
	round, model := int64(-1), ""
	if rec, err := latestRecord(w.dataDir); err == nil && rec != nil {
		round, model = rec.Round, rec.Model.String()
	}
	switch {
	case round < 0:
		return fmt.Sprintf("interrupted before round 0 sealed: swarm %s (manifest and identity) saved in %s; start again with --data-dir %s to keep its ID", swarm, w.dataDir, w.dataDir)
	case round == int64(w.cfg.Train.Rounds)-1:
		return fmt.Sprintf("stopped: swarm %s sealed all %d rounds; ledger and models saved in %s (final model %s)", swarm, round+1, w.dataDir, model)
	}
	return fmt.Sprintf("interrupted: swarm %s saved in %s through round %d (model %s); start again with --data-dir %s to resume", swarm, w.dataDir, round, model, w.dataDir)
}

// latestRecord reads the head of the ledger in a stopped node's directory;
// nil when no round was sealed.
func latestRecord(dir string) (*record.RoundRecord, error) {
	store, err := storage.Open(dir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	ctx := context.Background()
	head, err := store.Head(ctx, storage.HeadLedger)
	if errors.Is(err, storage.ErrNoHead) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := store.Get(ctx, head)
	if err != nil {
		return nil, err
	}
	rec, _, err := record.OpenBlock[record.RoundRecord](b)
	return rec, err
}

// invokedAs is how to run this binary again, for the lines start prints to
// be pasted: the path it was started by (bin/swarmtrain from the repo), the
// bare name when it was found on PATH, go run under go run.
func invokedAs() string {
	a := os.Args[0]
	switch {
	case !strings.ContainsRune(a, filepath.Separator):
		return "swarmtrain"
	case strings.Contains(a, "go-build"):
		return "go run ./cmd/swarmtrain"
	}
	return a
}

// pickAddr prefers a QUIC address for the printed join line, then TCP: a
// contributor behind a NAT learns its public QUIC address from this
// connection, and QUIC is what DCUtR punches holes with (TCP dials leave
// from a fresh port, as TCP listens without SO_REUSEPORT: p2p.NewHost).
func pickAddr(addrs []string) string {
	for _, want := range []string{"/quic-v1/", "/tcp/"} {
		for _, a := range addrs {
			if strings.Contains(a, want) {
				return a
			}
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return "<no address>"
}

// coordinatorTextWindows is how many held-out windows of a text the
// coordinator evaluates each round on (64,000 characters at context 64).
const coordinatorTextWindows = 1000

func newJoinCmd(e *env) *cobra.Command {
	var dataDir, datasetFlag, device, relay string
	var bootstrap, listen, announce []string
	cmd := &cobra.Command{
		Use:   "join SWARM-ID --bootstrap MULTIADDR",
		Short: "Contribute to a swarm from this machine (a contributor's command)",
		Long: `join checks that the bootstrap peer serves the swarm, then trains on the
shards the swarm assigns and sends an update every round until the swarm's last
round. Without --data-dir it uses ~/.swarmtrain/contributor, or the first of
contributor-2, contributor-3, ... that no running contributor uses.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			swarmID := args[0]
			dev, err := train.ParseDevice(device)
			if err != nil {
				return fmt.Errorf("--device: %w", err)
			}
			if _, err := cid.Decode(swarmID); err != nil {
				return fmt.Errorf("swarm ID %q is not a CID: give the ID start printed (bafy...)", swarmID)
			}
			if len(bootstrap) == 0 {
				return errors.New("--bootstrap: give the address start printed, /ip4/HOST/tcp/PORT/p2p/PEER-ID")
			}
			for _, a := range bootstrap {
				if _, err := peer.AddrInfoFromString(a); err != nil {
					return fmt.Errorf("--bootstrap %s is not a peer multiaddr (%v): give the address start printed, /ip4/HOST/tcp/PORT/p2p/PEER-ID", a, err)
				}
			}
			if err := config.CheckRelay("--relay", relay); err != nil {
				return err
			}
			for _, a := range announce {
				if err := config.CheckAnnounce("--announce", a); err != nil {
					return err
				}
			}
			// The dataset is the swarm's: it is loaded once the manifest
			// says which one (LoadTrain), and its hash checked against it.
			loadTrain := func(sc *config.Swarm) (*data.Set, error) {
				dir, why := datasetDir(sc, datasetFlag, "")
				trainSet, _, err := loadDataset(sc, dir, why)
				return trainSet, err
			}
			if err := probeSwarm(cmd.Context(), e, swarmID, bootstrap); err != nil {
				if interrupted(cmd) {
					fmt.Fprintln(e.stdout, "interrupted before joining; nothing saved")
					return nil
				}
				return err
			}
			if dataDir == "" {
				dataDir = freeNodeDir("contributor")
				if first := defaultNodeDir("contributor"); dataDir != first {
					fmt.Fprintf(e.stdout, "data dir %s (%s is in use by another contributor on this machine)\n", dataDir, first)
				}
			} else if err := checkNodeDirFree(dataDir, "contributor"); err != nil {
				return err
			}
			undo := claimNodeDir(dataDir)
			var mu sync.Mutex
			applied, first, last := 0, int64(-1), int64(-1)
			err = node.RunContributor(cmd.Context(), node.ContributorConfig{
				SwarmID: swarmID, Bootstrap: bootstrap, DataDir: dataDir, Listen: listen, Relay: relay, Announce: announce, LoadTrain: loadTrain, Device: dev, Log: e.log,
				Event: func(ev node.Event) {
					eventLine(e.stdout, ev)
					if a, ok := ev.(node.Applied); ok {
						mu.Lock()
						defer mu.Unlock()
						applied++
						if first < 0 {
							first = a.Round
						}
						last = a.Round
					}
				},
			})
			mu.Lock()
			defer mu.Unlock()
			if applied == 0 && (err != nil || interrupted(cmd)) {
				undo() // this run made nothing worth keeping: no fresh key left behind
			}
			if interrupted(cmd) {
				if applied == 0 {
					fmt.Fprintln(e.stdout, "interrupted before a round was applied; nothing saved")
				} else {
					fmt.Fprintf(e.stdout, "interrupted: took part in rounds %d to %d of swarm %s; identity and blocks saved in %s (join again with --data-dir %s to keep this peer ID and its score)\n",
						first, last, swarmID, dataDir, dataDir)
				}
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&bootstrap, "bootstrap", nil, "multiaddr of a swarm peer, as printed by start (repeatable)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the contributor's directory: identity and blocks (default ~/.swarmtrain/contributor, or the first free contributor-N)")
	addDatasetFlag(cmd.Flags(), &datasetFlag, "mnist-dir")
	cmd.Flags().StringVar(&device, "device", "cpu", "where local steps run: cpu, cuda or cuda:N")
	// TCP and QUIC: QUIC dials from its listening socket, which is what lets
	// DCUtR punch through a NAT.
	cmd.Flags().StringSliceVar(&listen, "listen", config.Default().Network.Listen, "listen multiaddrs (behind a NAT: /ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1)")
	cmd.Flags().StringVar(&relay, "relay", "auto", "NAT traversal: auto (AutoNAT decides), use (behind a NAT: reserve a relay slot on the bootstrap peers now), serve (publicly reachable: relay for others), off")
	cmd.Flags().StringSliceVar(&announce, "announce", nil, "addresses to advertise instead of the observed ones (a port forward), e.g. /ip4/203.0.113.7/udp/4001/quic-v1")
	return cmd
}

// probeTimeout bounds asking one bootstrap peer for its swarm's head.
const probeTimeout = 15 * time.Second

// probeSwarm asks each bootstrap peer which swarm it serves, printing what
// it tries, and fails at once, naming every peer and why, when none serves
// swarmID: a wrong ID or address is a one-line error, not a minute of
// silence.
func probeSwarm(ctx context.Context, e *env, swarmID string, bootstrap []string) error {
	var tried []string
	for _, a := range bootstrap {
		fmt.Fprintf(e.stdout, "asking %s for swarm %s\n", a, swarmID)
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		hd, err := node.ProbeHead(pctx, a)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			tried = append(tried, errorLine(err)) // names the peer
		case hd.Swarm != swarmID:
			tried = append(tried, fmt.Sprintf("%s serves swarm %s", a, hd.Swarm))
		default:
			at := "no round sealed yet"
			if hd.Record != "" {
				at = fmt.Sprintf("round %d sealed", hd.Round)
			}
			fmt.Fprintf(e.stdout, "%s serves swarm %s (%s); joining\n", a, swarmID, at)
			return nil
		}
	}
	return fmt.Errorf("no bootstrap peer serves swarm %s: %s (check the swarm ID and address in the join line start printed)", swarmID, strings.Join(tried, "; "))
}

func newScoresCmd(e *env) *cobra.Command {
	var api, bootstrap, peerID string
	cmd := &cobra.Command{
		Use:   "scores [SWARM-ID] (--api URL | --bootstrap MULTIADDR) [--peer ID]",
		Short: "Show every peer's score, accepted and rejected contributions (an observer's command)",
		Long: `scores reads the scores of the latest sealed round, either from the
coordinator's HTTP API (--api) or over the peer-to-peer network from any swarm
peer (--bootstrap): the round record is fetched by CID and its signature checked
against the swarm's coordinator.

With --peer it shows one peer's every round instead: verdict, score after
the round, tier-2 quality, and the reason and evidence of each rejection
(over --bootstrap the whole ledger is copied and verified first).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := ""
			if len(args) == 1 {
				want = args[0]
			}
			if peerID != "" {
				return peerScores(cmd.Context(), e, api, bootstrap, want, peerID)
			}
			var scores []record.PeerScore
			switch {
			case api != "" && bootstrap != "":
				return errors.New("give --api or --bootstrap, not both")
			case api != "":
				swarm, sc, err := scoresFromAPI(api)
				if err != nil {
					return err
				}
				scores = sc
				if want != "" && want != swarm {
					return fmt.Errorf("the API at %s serves swarm %s, not %s", api, swarm, want)
				}
				if len(scores) == 0 {
					fmt.Fprintf(e.stdout, "swarm %s: no round sealed yet; scores appear once round 0 is sealed\n", swarm)
					return nil
				}
			case bootstrap != "":
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
				defer cancel()
				obs, err := node.Observe(ctx, bootstrap, want)
				if err != nil {
					return err
				}
				if !obs.Record.Defined() {
					fmt.Fprintf(e.stdout, "swarm %s: no round sealed yet; scores appear once round 0 is sealed\n", obs.Swarm)
					return nil
				}
				scores = obs.Scores
				fmt.Fprintf(e.stdout, "swarm %s, round %d (record %s)\n", obs.Swarm, obs.Round, obs.Record)
			default:
				return errors.New("say where to read the scores: --api URL (the coordinator's HTTP API) or --bootstrap MULTIADDR (any swarm peer)")
			}
			printScores(e, scores)
			return nil
		},
	}
	cmd.Flags().StringVar(&api, "api", "", "the coordinator's HTTP API (printed by start), e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "multiaddr of a swarm peer (printed by start)")
	cmd.Flags().StringVar(&peerID, "peer", "", "show this peer's history, round by round, with the reasons")
	return cmd
}

// peerScores prints one peer's rounds from the API or from a verified copy
// of the ledger.
func peerScores(ctx context.Context, e *env, api, bootstrap, swarm, peerID string) error {
	var hist []verify.PeerRound
	switch {
	case api != "" && bootstrap != "":
		return errors.New("give --api or --bootstrap, not both")
	case api != "":
		var body node.PeerResponse
		if err := getAPI(api, "/v1/peers/"+peerID, &body); err != nil {
			return err
		}
		if swarm != "" && swarm != body.Swarm {
			return fmt.Errorf("the API at %s serves swarm %s, not %s", api, body.Swarm, swarm)
		}
		hist = body.Rounds
	case bootstrap != "":
		dir, err := os.MkdirTemp("", "swarmtrain-scores-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if _, err := node.CopyLedger(cctx, bootstrap, swarm, dir); err != nil {
			return err
		}
		store, err := storage.Open(dir)
		if err != nil {
			return err
		}
		defer store.Close()
		if hist, err = verify.PeerHistory(ctx, store, peerID); err != nil {
			return err
		}
	default:
		return errors.New("say where to read the scores: --api URL (the coordinator's HTTP API) or --bootstrap MULTIADDR (any swarm peer)")
	}
	if len(hist) == 0 {
		return fmt.Errorf("peer %s has no contribution in the ledger", peerID)
	}
	fmt.Fprintf(e.stdout, "peer %s: %d rounds\n", peerID, len(hist))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ROUND\tVERDICT\tSCORE\tTIER 2\tREASON\n")
	for _, h := range hist {
		q, why := "-", h.Reason
		if h.Quality != nil {
			q = fmt.Sprintf("%+.1f", *h.Quality)
		}
		if h.Evidence != "" {
			why += " [evidence: " + h.Evidence + "]"
		}
		fmt.Fprintf(tw, "%d\t%s\t%.3f\t%s\t%s\n", h.Round, h.Verdict, h.Score, q, why)
	}
	return tw.Flush()
}

func scoresFromAPI(api string) (string, []record.PeerScore, error) {
	var body node.ScoresResponse
	if err := getAPI(api, "/v1/scores", &body); err != nil {
		return "", nil, err
	}
	return body.Swarm, body.Scores, nil
}

// printScores prints a table, best score first.
func printScores(e *env, scores []record.PeerScore) {
	slices.SortFunc(scores, func(a, b record.PeerScore) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return strings.Compare(a.Peer, b.Peer)
	})
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PEER\tSCORE\tACCEPTED\tREJECTED\tLAST ROUND\tREJECTED FOR\n")
	for _, s := range scores {
		why := "-"
		if s.Rejections != nil {
			var parts []string
			for _, r := range *s.Rejections {
				parts = append(parts, fmt.Sprintf("%s ×%d", r.Reason, r.Count))
			}
			why = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%d\t%d\t%d\t%s\n", s.Peer, s.Score, s.Accepted, s.Rejected, s.LastRound, why)
	}
	tw.Flush()
}
