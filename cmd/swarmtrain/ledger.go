package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

func newLedgerCmd(e *env) *cobra.Command {
	var dataDir, bootstrap, auditData string
	var check, recheck bool
	cmd := &cobra.Command{
		Use:   "ledger [SWARM-ID] --verify [--recheck [--audit-data DIR]] (--data-dir DIR | --bootstrap MULTIADDR)",
		Short: "Walk a swarm's round records from the head and check every signature and link",
		Long: `ledger --verify walks the round records from the head back to round 0 and checks
every signature and link. With --recheck it then replays the ledger from round 0:
it re-runs tiers 0 and 1 on every stored contribution and payload, re-draws every
tier-2 sample and recomputes every score with the documented formula
(docs/ARCHITECTURE.md), and fails naming the first record and peer whose verdict,
sample or score it cannot reproduce. With --audit-data it also replays every
recorded tier-3 audit (a contributor's local work, from its committed state) on
that training set.

It reads a stopped node's data dir (--data-dir), or, with --bootstrap, copies
the ledger from any swarm peer — records, contributions, payloads and evidence,
over bitswap — and checks the copy: nothing the peer says is trusted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !check {
				return errors.New("say what to do: --verify")
			}
			if bootstrap != "" {
				if cmd.Flags().Changed("data-dir") {
					return errors.New("give --data-dir or --bootstrap, not both")
				}
				dir, err := os.MkdirTemp("", "swarmtrain-ledger-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				want := ""
				if len(args) == 1 {
					want = args[0]
				}
				lc, err := node.CopyLedger(cmd.Context(), bootstrap, want, dir)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "copied %d rounds (%d blocks) of swarm %s from %s\n", lc.Rounds, lc.Blocks, lc.Swarm, bootstrap)
				if len(lc.Missing) > 0 {
					fmt.Fprintf(e.stdout, "%d blocks could not be fetched (the first: %s)\n", len(lc.Missing), lc.Missing[0])
				}
				dataDir = dir
			}
			if err := hasNodeData(dataDir, "or --bootstrap to copy the ledger from a running peer"); err != nil {
				return err
			}
			if dirInUse(dataDir) {
				return fmt.Errorf("--data-dir %s is in use by a running node: copy the ledger from the live swarm with --bootstrap MULTIADDR, or stop the node first", dataDir)
			}
			store, err := storage.Open(dataDir)
			if err != nil {
				return err
			}
			defer store.Close()
			s, err := verify.Ledger(cmd.Context(), store)
			if err != nil {
				return fmt.Errorf("ledger in %s does not verify: %w", dataDir, err)
			}
			if len(args) == 1 && s.Swarm != args[0] {
				return fmt.Errorf("the ledger is swarm %s's, not %s", s.Swarm, args[0])
			}
			if auditData != "" && !recheck {
				return errors.New("--audit-data replays audits during --recheck: add --recheck")
			}
			if recheck {
				var opt round.RecheckOptions
				if auditData != "" {
					trainSet, _, err := data.LoadMNIST(auditData)
					if err != nil {
						return fmt.Errorf("--audit-data: %w", err)
					}
					opt.AuditData = trainSet
				}
				r, err := round.RecheckWith(cmd.Context(), store, opt)
				if err != nil {
					return fmt.Errorf("ledger does not recheck: %w", err)
				}
				defer fmt.Fprintf(e.stdout, "recheck ok: %d verdicts, %d tier-2 samples, %d peer scores and %d models reproduced from the stored evidence\n", r.Entries, r.Sampled, r.Scores, r.Models)
			}
			fmt.Fprintf(e.stdout, "swarm %s (%s), coordinator %s\n", s.Swarm, s.Name, s.Coordinator)
			fmt.Fprintf(e.stdout, "ledger ok: %d rounds verified from head %s; every record signed by the coordinator and linked to the one before\n", s.Rounds, s.Head)
			fmt.Fprintf(e.stdout, "%d contributions accepted, %d rejected, from %d peers; latest model %s\n", s.Accepted, s.Rejected, s.Peers, s.LastModel)
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "verify", false, "verify every record")
	cmd.Flags().BoolVar(&recheck, "recheck", false, "also re-run tiers 0 and 1 and recompute every score from the stored evidence")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "the data dir holding the ledger (a stopped node's)")
	cmd.Flags().StringVar(&auditData, "audit-data", "", "with --recheck, replay every recorded tier-3 audit on the MNIST training set in this folder instead of taking it as recorded")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "copy the ledger from this swarm peer (multiaddr) and check the copy")
	return cmd
}

func newExportCmd(e *env) *cobra.Command {
	var dataDir, bootstrap, api, out string
	cmd := &cobra.Command{
		Use:   "export MODEL-CID -o model.safetensors (--bootstrap MULTIADDR | --api URL | --data-dir DIR)",
		Short: "Write a model checkpoint to a safetensors file, from a live swarm or a stopped node's data dir",
		Long: `export writes the model checkpoint MODEL-CID (start prints one per sealed round
and the final one at the end) to a safetensors file. It fetches it over bitswap
from a swarm peer (--bootstrap, or the coordinator's --api, which names its
addresses), or reads it from a stopped node's --data-dir. Either way the bytes
are checked against the CID before the file is written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cid.Decode(args[0])
			if err != nil {
				return fmt.Errorf("model CID %q: %w", args[0], err)
			}
			sources := 0
			for _, set := range []bool{bootstrap != "", api != "", cmd.Flags().Changed("data-dir")} {
				if set {
					sources++
				}
			}
			if sources > 1 {
				return errors.New("give one of --bootstrap, --api or --data-dir")
			}
			var b []byte
			switch {
			case api != "":
				if bootstrap, err = apiPeerAddr(api); err != nil {
					return err
				}
				fallthrough
			case bootstrap != "":
				ctx, cancel := context.WithTimeout(cmd.Context(), exportTimeout)
				defer cancel()
				if b, err = node.FetchFile(ctx, bootstrap, c); err != nil {
					if ctx.Err() == context.DeadlineExceeded {
						return fmt.Errorf("model %s: %s did not send it within %s (the coordinator holds every round's model; a contributor only those it fetched)", c, bootstrap, exportTimeout)
					}
					return err
				}
			default:
				if b, err = readLocalFile(cmd.Context(), dataDir, c); err != nil {
					return err
				}
			}
			// A temp file in the same dir, synced, then renamed: an
			// interrupted export never leaves a partial checkpoint.
			if err := storage.WriteFileAtomic(out, b, 0o644); err != nil {
				return fmt.Errorf("-o %s: %w", out, err)
			}
			fmt.Fprintf(e.stdout, "wrote %s (%d bytes, hash matches %s): load it with safetensors.torch.load_file(%q)\n", out, len(b), c, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "model.safetensors", "file to write")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "fetch the model from this swarm peer (multiaddr, as start prints)")
	cmd.Flags().StringVar(&api, "api", "", "fetch the model from the coordinator whose HTTP API this is, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "read the model from this stopped node's directory")
	return cmd
}

// exportTimeout bounds fetching a model from a live swarm: a checkpoint is
// a few MB, seconds on any link; minutes mean the peer does not hold it.
const exportTimeout = 2 * time.Minute

// readLocalFile reads file c from a stopped node's directory and checks its
// hash, saying what to do when the node is running or lacks it.
func readLocalFile(ctx context.Context, dir string, c cid.Cid) ([]byte, error) {
	if err := hasNodeData(dir, "or --bootstrap to fetch the model from a running peer"); err != nil {
		return nil, err
	}
	if dirInUse(dir) {
		return nil, fmt.Errorf("--data-dir %s is in use by a running node: export from the live swarm with --bootstrap MULTIADDR or --api URL, or stop the node first", dir)
	}
	store, err := storage.Open(dir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if ok, _ := store.Has(ctx, c); !ok {
		return nil, fmt.Errorf("model %s is not in --data-dir %s: the coordinator's directory holds every round's model, a contributor's only those it fetched; or fetch it from the live swarm with --bootstrap MULTIADDR", c, dir)
	}
	b, err := store.ReadFile(ctx, c)
	if err != nil {
		return nil, err
	}
	if got, err := storage.FileCID(b); err != nil || !got.Equals(c) {
		return nil, fmt.Errorf("model %s in --data-dir %s does not hash to its CID (got %s): the store is damaged", c, dir, got)
	}
	return b, nil
}

// apiBase is the API's root URL: the address start prints ends in
// /v1/swarm, and pasting it whole must work too.
func apiBase(api string) string {
	api = strings.TrimSuffix(api, "/")
	api = strings.TrimSuffix(api, "/v1/swarm")
	return strings.TrimSuffix(api, "/")
}

// apiTimeout bounds one API request: the API answers from memory or from
// an index (/v1/peers), in milliseconds.
const apiTimeout = 30 * time.Second

// getAPI GETs path from the coordinator's HTTP API and decodes the JSON
// answer into v (one of the node.*Response types); an error names --api
// and, for a refused request, what the API said.
func getAPI(api, path string, v any) error {
	client := &http.Client{Timeout: apiTimeout}
	resp, err := client.Get(apiBase(api) + path)
	if err != nil {
		return fmt.Errorf("--api %s: %w", api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("--api %s: %s: %s", api, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("--api %s: %w", api, err)
	}
	return nil
}

// apiPeerAddr asks the coordinator's API where its node listens, for a
// bitswap fetch from it.
func apiPeerAddr(api string) (string, error) {
	var body node.SwarmResponse
	if err := getAPI(api, "/v1/swarm", &body); err != nil {
		return "", err
	}
	if len(body.Head.Addrs) == 0 {
		return "", fmt.Errorf("--api %s names no address of its node", api)
	}
	return pickAddr(body.Head.Addrs), nil
}

// hasNodeData refuses a --data-dir that holds no node's store, rather than
// creating an empty one and reporting that it holds no swarm.
func hasNodeData(dir, hint string) error {
	if _, err := os.Stat(filepath.Join(dir, "blocks")); err != nil {
		return fmt.Errorf("--data-dir %s holds no node data: give the coordinator's data dir, %s", dir, hint)
	}
	return nil
}
