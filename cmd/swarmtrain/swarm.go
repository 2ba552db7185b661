package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// defaultNodeDir is where a node keeps its identity and blocks unless
// --data-dir says otherwise.
func defaultNodeDir(role string) string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".swarmtrain", role)
	}
	return filepath.Join(".swarmtrain", role)
}

func newStartCmd(e *env) *cobra.Command {
	var cfgPath, dataDir, mnistDir string
	var listen []string
	cmd := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Start a swarm as its coordinator (a researcher's command)",
		Long: `start defines a swarm from a config, prints its ID and the join command for
contributors, then checks, aggregates and seals every round, printing one line
per round. Restarted on the same --data-dir it resumes after the last sealed round.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, mnistDir)
			if err != nil {
				return err
			}
			if len(listen) > 0 {
				cfg.Network.Listen = listen
			}
			trainSet, testSet, err := data.LoadMNIST(cfg.DataDir())
			if err != nil {
				return err
			}
			if dataDir == "" {
				dataDir = defaultNodeDir("coordinator")
			}
			return node.RunCoordinator(cmd.Context(), node.CoordinatorConfig{
				Swarm: cfg, DataDir: dataDir, Train: trainSet, Test: testSet, Log: e.log,
				RoundDone: func(s node.RoundSummary) { roundLine(e.stdout, s) },
				Event:     func(ev node.Event) { eventLine(e.stdout, ev) },
				Ready: func(id string, addrs []string, api string) {
					fmt.Fprintf(e.stdout, "swarm %s (%s) started; data dir %s\n", id, cfg.Name, dataDir)
					if api != "" {
						fmt.Fprintf(e.stdout, "api: http://%s/v1/swarm\n", api)
					}
					fmt.Fprintf(e.stdout, "contributors join with:\n  swarmtrain join %s --bootstrap %s\n", id, pickAddr(addrs))
				},
			})
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "swarm config (YAML); see examples/")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "node data dir: identity, blocks, ledger (default ~/.swarmtrain/coordinator)")
	cmd.Flags().StringVar(&mnistDir, "mnist-dir", "", "MNIST directory (overrides data.dir)")
	cmd.Flags().StringSliceVar(&listen, "listen", nil, "listen multiaddrs (override network.listen)")
	cmd.MarkFlagRequired("config")
	return cmd
}

// pickAddr prefers a TCP address for the printed join line.
func pickAddr(addrs []string) string {
	for _, a := range addrs {
		if strings.Contains(a, "/tcp/") {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return "<no address>"
}

func newJoinCmd(e *env) *cobra.Command {
	var dataDir, mnistDir, device string
	var bootstrap, listen []string
	cmd := &cobra.Command{
		Use:   "join SWARM-ID --bootstrap MULTIADDR",
		Short: "Contribute to a swarm from this machine (a contributor's command)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := train.ParseDevice(device)
			if err != nil {
				return fmt.Errorf("--device: %w", err)
			}
			cfg := config.Default()
			if mnistDir != "" {
				cfg.Data.Dir = mnistDir
			}
			trainSet, _, err := data.LoadMNIST(cfg.DataDir())
			if err != nil {
				return err
			}
			if dataDir == "" {
				dataDir = defaultNodeDir("contributor")
			}
			return node.RunContributor(cmd.Context(), node.ContributorConfig{
				SwarmID: args[0], Bootstrap: bootstrap, DataDir: dataDir, Listen: listen, Train: trainSet, Device: dev, Log: e.log,
				Event: func(ev node.Event) { eventLine(e.stdout, ev) },
			})
		},
	}
	cmd.Flags().StringSliceVar(&bootstrap, "bootstrap", nil, "multiaddr of a swarm peer, as printed by start (repeatable)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "node data dir: identity and blocks (default ~/.swarmtrain/contributor)")
	cmd.Flags().StringVar(&mnistDir, "mnist-dir", "", "MNIST directory (default $SWARMTRAIN_DATA/mnist or ~/.cache/swarmtrain/data/mnist)")
	cmd.Flags().StringVar(&device, "device", "cpu", "where local steps run: cpu, cuda or cuda:N")
	cmd.Flags().StringSliceVar(&listen, "listen", []string{"/ip4/127.0.0.1/tcp/0"}, "listen multiaddrs")
	cmd.MarkFlagRequired("bootstrap")
	return cmd
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
			case bootstrap != "":
				ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
				defer cancel()
				obs, err := node.Observe(ctx, bootstrap, want)
				if err != nil {
					return err
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
		client := &http.Client{Timeout: 30 * time.Second}
		resp, err := client.Get(strings.TrimSuffix(api, "/") + "/v1/peers/" + peerID)
		if err != nil {
			return fmt.Errorf("--api %s: %w", api, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("--api %s: %s: %s", api, resp.Status, strings.TrimSpace(string(b)))
		}
		var body struct {
			Swarm  string             `json:"swarm"`
			Rounds []verify.PeerRound `json:"rounds"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("--api %s: %w", api, err)
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
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(strings.TrimSuffix(api, "/") + "/v1/scores")
	if err != nil {
		return "", nil, fmt.Errorf("--api %s: %w", api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("--api %s: %s", api, resp.Status)
	}
	var body struct {
		Swarm  string             `json:"swarm"`
		Scores []record.PeerScore `json:"scores"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", nil, fmt.Errorf("--api %s: %w", api, err)
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
