package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/verify"
)

func newLedgerCmd(e *env) *cobra.Command {
	var dataDir, bootstrap string
	var check, recheck bool
	cmd := &cobra.Command{
		Use:   "ledger [SWARM-ID] --verify [--recheck] (--data-dir DIR | --bootstrap MULTIADDR)",
		Short: "Walk a swarm's round records from the head and check every signature and link",
		Long: `ledger --verify walks the round records from the head back to round 0 and checks
every signature and link. With --recheck it then replays the ledger from round 0:
it re-runs tiers 0 and 1 on every stored contribution and payload, re-draws every
tier-2 sample and recomputes every score with the documented formula
(docs/ARCHITECTURE.md), and fails naming the first record and peer whose verdict,
sample or score it cannot reproduce.

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
			if recheck {
				r, err := round.Recheck(cmd.Context(), store)
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
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "copy the ledger from this swarm peer (multiaddr) and check the copy")
	return cmd
}

func newExportCmd(e *env) *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "export MODEL-CID -o model.safetensors",
		Short: "Write a model checkpoint held in a data dir to a safetensors file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cid.Decode(args[0])
			if err != nil {
				return fmt.Errorf("model CID %q: %w", args[0], err)
			}
			if err := hasNodeData(dataDir, "where the swarm ran"); err != nil {
				return err
			}
			store, err := storage.Open(dataDir)
			if err != nil {
				return err
			}
			defer store.Close()
			b, err := store.ReadFile(cmd.Context(), c)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s (%d bytes): load it with safetensors.torch.load_file(%q)\n", out, len(b), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "model.safetensors", "file to write")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "the data dir holding the model (a stopped node's)")
	return cmd
}

// hasNodeData refuses a --data-dir that holds no node's store, rather than
// creating an empty one and reporting that it holds no swarm.
func hasNodeData(dir, hint string) error {
	if _, err := os.Stat(filepath.Join(dir, "blocks")); err != nil {
		return fmt.Errorf("--data-dir %s holds no node data: give the coordinator's data dir, %s", dir, hint)
	}
	return nil
}
