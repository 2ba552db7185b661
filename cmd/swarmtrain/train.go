package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/train"
)

func newTrainCmd(e *env) *cobra.Command {
	var cfgPath, datasetFlag, device, output string
	var epochs, limit int
	cmd := &cobra.Command{
		Use:   "train --config FILE [--output model.safetensors]",
		Short: "Train in one process: the baseline swarm runs are judged against",
		Long: `train runs the config's model and inner optimizer on all of MNIST in one
process, printing loss, test accuracy and speed per epoch. It is the reference
a swarm with the same sample budget is compared with.

--output writes the trained model as a safetensors checkpoint PyTorch loads
with no mapping (tensor names and shapes as the torch.nn module its metadata
describes; examples/python/load_checkpoint.py), with the config and the
final test metric in its metadata.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("epochs") {
				cfg.Train.Epochs = epochs
			}
			dev, err := train.ParseDevice(device)
			if err != nil {
				return fmt.Errorf("--device: %w", err)
			}
			trainSet, testSet, err := loadMNIST(datasetDir(cfg, datasetFlag, cfgPath))
			if err != nil {
				return err
			}
			if limit > 0 {
				trainSet, testSet = trainSet.Head(limit), testSet.Head(limit)
			}
			m, err := train.New(node.ModelSpec(cfg), cfg.Train.BatchSize, cfg.Seed, train.WithDevice(dev))
			if err != nil {
				return err
			}
			defer m.Close()
			opt, err := train.NewOptimizer(node.OptimizerSpec(cfg.Train.InnerOptimizer), m.NumParams())
			if err != nil {
				return fmt.Errorf("train.inner_optimizer.%w", err)
			}
			fmt.Fprintf(e.stdout, "%s: %s model, %d parameters, batch %d, %s, %s BLAS, %d training / %d test images\n",
				cfg.Name, cfg.Model.Kind, m.NumParams(), cfg.Train.BatchSize, dev, train.BLAS(), trainSet.N, testSet.N)
			var fitOpts []train.FitOption
			if cfg.Train.LRSchedule == "cosine" {
				fitOpts = append(fitOpts, train.WithCosineDecay())
			}
			if output != "" {
				// Fail on an unwritable path now, not after the training.
				if err := checkWritable(output); err != nil {
					return fmt.Errorf("--output %s: %w", output, err)
				}
			}
			tty := isTerminal(e.stdout)
			stats, err := train.Fit(cmd.Context(), m, opt, trainSet, testSet, cfg.Train.Epochs, cfg.Seed, func(s train.EpochStats) {
				if !s.Done {
					if tty {
						fmt.Fprintf(e.stdout, "\repoch %d  step %d/%d  loss %.4f  %.0f samples/s ", s.Epoch, s.Step, s.Steps, s.Loss, s.SamplesPerSec)
					}
					return
				}
				if tty {
					fmt.Fprint(e.stdout, "\r\033[K")
				}
				fmt.Fprintf(e.stdout, "epoch %d  loss %.4f  test loss %.4f  test accuracy %.2f%%  %.0f samples/s  %s\n",
					s.Epoch, s.Loss, s.TestLoss, 100*s.TestAccuracy, s.SamplesPerSec, s.Elapsed.Round(time.Second))
			}, fitOpts...)
			if err != nil || output == "" {
				return err
			}
			canon, err := cfg.Canonical()
			if err != nil {
				return err
			}
			p := round.Provenance{Name: cfg.Name, Config: canon}
			if len(stats) > 0 {
				last := stats[len(stats)-1]
				p.Test = round.Metric{Samples: testSet.N, Correct: int(math.Round(last.TestAccuracy * float64(testSet.N))), Loss: last.TestLoss}
			}
			if err := writeCheckpoint(output, node.ModelSpec(cfg), m.Params(), p); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s: %s\n", output, loadHint(output))
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "swarm config (YAML); see examples/")
	// train's --data-dir meant the dataset; it stays as a deprecated alias.
	addDatasetFlag(cmd.Flags(), &datasetFlag, "data-dir")
	cmd.Flags().StringVar(&device, "device", "cpu", "where steps run: cpu, cuda or cuda:N")
	cmd.Flags().IntVar(&epochs, "epochs", 0, "override train.epochs")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the trained model to this safetensors file")
	cmd.Flags().IntVar(&limit, "limit", 0, "use only the first N training and test images (quick checks)")
	cmd.MarkFlagRequired("config")
	return cmd
}

// writeCheckpoint writes params as a PyTorch-loadable checkpoint with p in
// its metadata, atomically (an interrupted run leaves no partial file).
func writeCheckpoint(path string, spec train.ModelSpec, params []float32, p round.Provenance) error {
	stored, err := round.CheckpointFile(spec, params)
	if err != nil {
		return err
	}
	b, err := round.ExportFile(stored, p)
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("--output %s: %w", path, err)
	}
	return nil
}

// checkWritable fails when path's directory does not exist or path is a
// directory.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("no directory %s", filepath.Dir(path))
	}
	return nil
}

// loadHint says how a PyTorch user loads a checkpoint file.
func loadHint(path string) string {
	return fmt.Sprintf("load it in PyTorch with examples/python/load_checkpoint.py %s (or safetensors.torch.load_file(%q) into the nn.Sequential its metadata describes, strict=True)", path, path)
}
