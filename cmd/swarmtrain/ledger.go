package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

func newLedgerCmd(e *env) *cobra.Command {
	var dataDir, bootstrap, auditData string
	var check, recheck, refs bool
	cmd := &cobra.Command{
		Use:   "ledger [SWARM-ID] --verify [--recheck [--audit-data DIR]] [--refs] (--data-dir DIR | --bootstrap MULTIADDR)",
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
over bitswap — and checks the copy: nothing the peer says is trusted.

Records are IPLD: --refs then lists every block reachable from the head
through links (records, contributions, payloads, evidence, models, outer
states), one CID a line: what 'ipfs pin add --recursive HEAD' pins on an IPFS
node connected to the swarm, and 'ipfs dag get HEAD/body/model' resolves the
latest model. Linked blocks this store lacks are listed as "missing CID"
(a payload its author withheld; models a --bootstrap copy does not fetch).`,
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
			if refs {
				// Printed last (deferred before the recheck's line).
				rs, err := store.Refs(cmd.Context(), s.Head)
				if err != nil {
					return fmt.Errorf("ledger in %s: walking the links from head %s: %w", dataDir, s.Head, err)
				}
				defer func() {
					fmt.Fprintf(e.stdout, "refs: %d blocks reachable from head %s (what `ipfs pin add --recursive %s` pins), %d linked but not in this store:\n", len(rs.Blocks), s.Head, s.Head, len(rs.Missing))
					for _, c := range rs.Blocks {
						fmt.Fprintln(e.stdout, c)
					}
					for _, c := range rs.Missing {
						fmt.Fprintln(e.stdout, "missing", c)
					}
				}()
			}
			if recheck {
				opt := round.RecheckOptions{AuditDataDir: auditData}
				r, err := round.RecheckWith(cmd.Context(), store, opt)
				if err != nil {
					return fmt.Errorf("ledger does not recheck: %w", err)
				}
				audits := fmt.Sprintf("%d tier-3 audits", r.Audits)
				switch {
				case r.Audits > 0 && r.AuditsReplayed:
					audits += " (each replayed on the training set)"
				case r.Audits > 0:
					audits += " (as recorded: add --audit-data DIR to replay them)"
				}
				defer fmt.Fprintf(e.stdout, "recheck ok: %d verdicts, %d tier-2 samples, %s, %d peer scores and %d models reproduced from the stored evidence\n", r.Entries, r.Sampled, audits, r.Scores, r.Models)
			}
			fmt.Fprintf(e.stdout, "swarm %s (%s), coordinator %s\n", s.Swarm, s.Name, s.Coordinator)
			fmt.Fprintf(e.stdout, "ledger ok: %d rounds verified from head %s; every record signed by the coordinator and linked to the one before\n", s.Rounds, s.Head)
			fmt.Fprintf(e.stdout, "%d contributions accepted, %d rejected, from %d peers; latest model %s\n", s.Accepted, s.Rejected, s.Peers, s.LastModel)
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "verify", false, "verify every record")
	cmd.Flags().BoolVar(&recheck, "recheck", false, "also re-run tiers 0 and 1 and recompute every score from the stored evidence")
	cmd.Flags().BoolVar(&refs, "refs", false, "also list every block linked from the head, one CID a line (what ipfs pin add --recursive pins)")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "the data dir holding the ledger (a stopped node's)")
	cmd.Flags().StringVar(&auditData, "audit-data", "", "with --recheck, replay every recorded tier-3 audit on the swarm's training set, loaded from this folder (its hash checked against the manifest), instead of taking it as recorded")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "copy the ledger from this swarm peer (multiaddr) and check the copy")
	return cmd
}

func newExportCmd(e *env) *cobra.Command {
	var dataDir, bootstrap, api, out, datasetFlag string
	var raw bool
	cmd := &cobra.Command{
		Use:   "export MODEL-CID -o model.safetensors (--bootstrap MULTIADDR | --api URL | --data-dir DIR)",
		Short: "Write a model checkpoint to a safetensors file PyTorch loads, from a live swarm or a stopped node's data dir",
		Long: `export writes the model checkpoint MODEL-CID (start prints one per sealed round
and the final one at the end) to a safetensors file. It fetches it over bitswap
from a swarm peer (--bootstrap, or the coordinator's --api, which names its
addresses), or reads it from a stopped node's --data-dir. Either way the bytes
are checked against the CID before anything is written.

The tensors are a state_dict of the torch.nn.Sequential the metadata describes
(swarmtrain.module), so load_state_dict(strict=True) takes them as they are;
examples/python/load_checkpoint.py builds the module from the metadata and
evaluates it. export adds where the model came from to the metadata: the
swarm, its name and config, the round and its record CID (looked up in the
ledger, verified), the model CID, and the test metric, which export measures
itself on the MNIST test set when it finds one (--dataset-dir). --raw writes
the stored checkpoint as it is instead (the bytes MODEL-CID names).`,
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
			var origin node.ModelOrigin
			switch {
			case api != "":
				if bootstrap, err = apiPeerAddr(api); err != nil {
					return err
				}
				fallthrough
			case bootstrap != "":
				ctx, cancel := context.WithTimeout(cmd.Context(), exportTimeout)
				defer cancel()
				if origin, err = node.FetchModelOrigin(ctx, bootstrap, c); err != nil {
					if ctx.Err() == context.DeadlineExceeded {
						return fmt.Errorf("model %s: %s did not send it within %s (the coordinator holds every round's model; a contributor only those it fetched)", c, bootstrap, exportTimeout)
					}
					return err
				}
			default:
				if origin, err = readLocalModel(cmd.Context(), dataDir, c); err != nil {
					return err
				}
			}
			b := origin.File
			what := fmt.Sprintf("the stored checkpoint, hash matches %s", c)
			if !raw {
				if b, what, err = exportWithOrigin(origin, c, datasetFlag, cmd.Flags().Changed("dataset-dir")); err != nil {
					return err
				}
			}
			// A temp file in the same dir, synced, then renamed: an
			// interrupted export never leaves a partial checkpoint.
			if err := storage.WriteFileAtomic(out, b, 0o644); err != nil {
				return fmt.Errorf("-o %s: %w", out, err)
			}
			fmt.Fprintf(e.stdout, "wrote %s (%d bytes; %s): %s\n", out, len(b), what, loadHint(out))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "model.safetensors", "file to write")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "fetch the model from this swarm peer (multiaddr, as start prints)")
	cmd.Flags().StringVar(&api, "api", "", "fetch the model from the coordinator whose HTTP API this is, e.g. http://127.0.0.1:8080")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "read the model from this stopped node's directory")
	cmd.Flags().StringVar(&datasetFlag, "dataset-dir", "", "MNIST directory for the test metric (default: data.dir in the swarm's config, else $SWARMTRAIN_DATA/mnist, else ~/.cache/swarmtrain/data/mnist); without one the file has no metric")
	cmd.Flags().BoolVar(&raw, "raw", false, "write the stored checkpoint byte for byte (its hash is MODEL-CID), without export's metadata")
	return cmd
}

// exportWithOrigin adds the model's provenance and test metric to its
// checkpoint's metadata, and says in words what it added.
func exportWithOrigin(o node.ModelOrigin, c cid.Cid, datasetFlag string, datasetGiven bool) ([]byte, string, error) {
	p := round.Provenance{Model: c.String()}
	what := []string{"checked against " + c.String()}
	// Provenance only from a verified ledger that names the model: a file
	// the ledger does not name gets no swarm's name on it.
	if !o.Found {
		why := "no verified ledger here (" + o.NoLedger + ")"
		if o.NoLedger == "" {
			why = "swarm " + o.Swarm + "'s ledger does not name it"
		}
		what = append(what, "no provenance or metric: "+why)
		b, err := round.ExportFile(o.File, p)
		return b, strings.Join(what, "; "), err
	}
	sc, err := config.FromCanonical(o.Manifest.Config)
	if err != nil {
		return nil, "", fmt.Errorf("swarm manifest %s: %w", o.Swarm, err)
	}
	p.Swarm, p.Name, p.Config = o.Swarm, o.Manifest.Name, o.Manifest.Config
	if o.Record.Defined() {
		p.Round, p.Record = o.Round, o.Record.String()
		what = append(what, fmt.Sprintf("swarm %s round %d, record %s", o.Swarm, o.Round, o.Record))
	} else {
		what = append(what, fmt.Sprintf("swarm %s's initial model", o.Swarm))
	}
	spec := round.ParamsOf(sc).Model
	params, err := round.ModelVector(spec, o.File)
	if err != nil {
		return nil, "", fmt.Errorf("model %s: %w", c, err)
	}
	dir, why := datasetDir(sc, datasetFlag, "the swarm's config")
	if _, testSet, err := loadMNIST(dir, why); err != nil {
		if datasetGiven {
			return nil, "", err
		}
		what = append(what, "no test metric: no MNIST in "+dir+" (--dataset-dir)")
	} else {
		if p.Test, err = evaluate(sc, params, testSet); err != nil {
			return nil, "", err
		}
		what = append(what, fmt.Sprintf("test accuracy %.2f%% (%d/%d)", 100*float64(p.Test.Correct)/float64(p.Test.Samples), p.Test.Correct, p.Test.Samples))
	}
	b, err := round.ExportFile(o.File, p)
	return b, strings.Join(what, "; "), err
}

// evaluate measures params on testSet with the model the coordinator
// evaluates each round with (the same build gives the same figures).
func evaluate(sc *config.Swarm, params []float32, testSet *data.Set) (round.Metric, error) {
	m, err := train.New(round.ParamsOf(sc).Model, sc.Train.BatchSize, sc.Seed)
	if err != nil {
		return round.Metric{}, err
	}
	defer m.Close()
	if err := m.WriteParams(params); err != nil {
		return round.Metric{}, err
	}
	loss, acc, err := m.Evaluate(testSet)
	if err != nil {
		return round.Metric{}, err
	}
	return round.Metric{Samples: testSet.N, Correct: int(math.Round(acc * float64(testSet.N))), Loss: loss}, nil
}

// exportTimeout bounds fetching a model from a live swarm: a checkpoint is
// a few MB, seconds on any link; minutes mean the peer does not hold it.
const exportTimeout = 2 * time.Minute

// readLocalModel reads checkpoint c from a stopped node's directory, checks
// its hash and looks it up in the node's ledger, saying what to do when the
// node is running or lacks it.
func readLocalModel(ctx context.Context, dir string, c cid.Cid) (node.ModelOrigin, error) {
	if err := hasNodeData(dir, "or --bootstrap to fetch the model from a running peer"); err != nil {
		return node.ModelOrigin{}, err
	}
	if dirInUse(dir) {
		return node.ModelOrigin{}, fmt.Errorf("--data-dir %s is in use by a running node: export from the live swarm with --bootstrap MULTIADDR or --api URL, or stop the node first", dir)
	}
	store, err := storage.Open(dir)
	if err != nil {
		return node.ModelOrigin{}, err
	}
	defer store.Close()
	if ok, _ := store.Has(ctx, c); !ok {
		return node.ModelOrigin{}, fmt.Errorf("model %s is not in --data-dir %s: the coordinator's directory holds every round's model, a contributor's only those it fetched; or fetch it from the live swarm with --bootstrap MULTIADDR", c, dir)
	}
	o, err := node.ModelOriginIn(ctx, store, c)
	if err != nil {
		return o, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	return o, nil
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
