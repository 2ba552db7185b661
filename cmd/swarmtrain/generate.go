package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/train"
)

func newGenerateCmd(e *env) *cobra.Command {
	var modelArg, cfgPath, prompt, datasetFlag, dataDir, bootstrap string
	var tokens int
	var temperature float64
	var seed uint64
	cmd := &cobra.Command{
		Use:   "generate --model CID|FILE --config FILE --prompt TEXT [--tokens N] [--temperature T]",
		Short: "Continue a prompt with a trained language model (a transformer on a text dataset)",
		Long: `generate loads a transformer checkpoint — a safetensors FILE (train --output,
export) or a model CID from a stopped node's --data-dir or a live swarm peer
(--bootstrap) — and continues --prompt character by character. The config gives
the model's shape and the text dataset, whose vocabulary maps tokens to
characters (the dataset is read from --dataset-dir as for train). --temperature 0
always takes the most likely character.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			spec := round.ModelSpec(cfg)
			if !spec.Text() {
				return fmt.Errorf("--config %s: model.kind is %s; generate needs a transformer", cfgPath, cfg.Model.Kind)
			}
			if tokens <= 0 {
				return fmt.Errorf("--tokens: must be > 0, got %d", tokens)
			}
			file, err := readModel(cmd.Context(), modelArg, dataDir, bootstrap)
			if err != nil {
				return err
			}
			n, err := train.NumParams(spec)
			if err != nil {
				return err
			}
			params, err := round.VectorOf(file, n)
			if err != nil {
				return fmt.Errorf("--model %s: %w (is it a model of --config %s?)", modelArg, err, cfgPath)
			}
			dir, why := datasetDir(cfg, datasetFlag, cfgPath)
			trainSet, _, err := loadDataset(cfg, dir, why)
			if err != nil {
				return err
			}
			m, err := train.New(spec, 1, cfg.Seed)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := m.WriteParams(params); err != nil {
				return err
			}
			out, err := train.Generate(m.(train.LanguageModel), trainSet.Vocab, prompt, tokens, temperature, seed)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s%s\n", prompt, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&modelArg, "model", "", "model checkpoint: a safetensors file, or a model CID")
	cmd.Flags().StringVar(&cfgPath, "config", "", "the swarm config the model was trained with")
	cmd.Flags().StringVar(&prompt, "prompt", "", "text to continue")
	cmd.Flags().IntVar(&tokens, "tokens", 200, "characters to generate")
	cmd.Flags().Float64Var(&temperature, "temperature", 0.8, "sampling temperature (0: most likely character)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "sampling seed")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultNodeDir("coordinator"), "with a model CID: read it from this stopped node's directory")
	cmd.Flags().StringVar(&bootstrap, "bootstrap", "", "with a model CID: fetch it from this swarm peer (multiaddr)")
	addDatasetFlag(cmd.Flags(), &datasetFlag)
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("config")
	cmd.MarkFlagRequired("prompt")
	return cmd
}

// readModel reads a checkpoint file, or a model CID from a node's
// directory or a live peer (checked against the CID either way).
func readModel(ctx context.Context, arg, dataDir, bootstrap string) ([]byte, error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		return os.ReadFile(arg)
	}
	c, err := cid.Decode(arg)
	if err != nil {
		return nil, fmt.Errorf("--model %s: neither a file nor a model CID", arg)
	}
	if bootstrap != "" {
		ctx, cancel := context.WithTimeout(ctx, exportTimeout)
		defer cancel()
		b, err := node.FetchFile(ctx, bootstrap, c)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("model %s: %s did not send it within %s", c, bootstrap, exportTimeout)
		}
		return b, err
	}
	o, err := readLocalModel(ctx, dataDir, c)
	return o.File, err
}
