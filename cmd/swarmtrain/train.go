package main

import (
	"fmt"
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
	var epochs, limit, evalSamples int
	var timeLimit time.Duration
	cmd := &cobra.Command{
		Use:   "train --config FILE [--output model.safetensors]",
		Short: "Train in one process: the baseline swarm runs are judged against",
		Long: `train runs the config's model and inner optimizer on its whole dataset in
one process, printing loss, test accuracy (for text: held-out bits per character
and perplexity) and speed per epoch. It is the reference a swarm with the same
sample budget is compared with.

--output writes the trained model as a safetensors checkpoint PyTorch loads
with no mapping (tensor names and shapes as the torch.nn module its metadata
describes; examples/python/load_checkpoint.py), with the config and the
final test metric in its metadata; generate reads it.`,
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
			dsDir, why := datasetDir(cfg, datasetFlag, cfgPath)
			trainSet, testSet, err := loadDataset(cfg, dsDir, why)
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
			what := "images"
			if trainSet.IsText() {
				what = fmt.Sprintf("windows of %d characters (vocabulary %d)", cfg.Model.Context, trainSet.NumClasses())
			}
			fmt.Fprintf(e.stdout, "%s: %s model, %d parameters, batch %d, %s, %s BLAS, %d training / %d test %s, data %d MB\n",
				cfg.Name, cfg.Model.Kind, m.NumParams(), cfg.Train.BatchSize, dev, train.BLAS(), trainSet.N, testSet.N, what, (trainSet.Bytes()+testSet.Bytes())>>20)
			var fitOpts []train.FitOption
			if cfg.Train.LRSchedule == "cosine" {
				fitOpts = append(fitOpts, train.WithCosineDecay())
			}
			if cfg.Train.StepsPerEpoch > 0 {
				fitOpts = append(fitOpts, train.WithStepsPerEpoch(cfg.Train.StepsPerEpoch))
			}
			if timeLimit > 0 {
				fitOpts = append(fitOpts, train.WithDeadline(time.Now().Add(timeLimit)))
			}
			if evalSamples > 0 {
				fitOpts = append(fitOpts, train.WithEvalSamples(evalSamples))
			}
			spec := m.Spec()
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
				if spec.Text() {
					mt := train.MetricsOf(spec, s.TestLoss, s.TestAccuracy)
					fmt.Fprintf(e.stdout, "epoch %d  loss %.4f  held-out %.3f bits/char  perplexity %.2f  next-char accuracy %.2f%%  %.0f chars/s  %s\n",
						s.Epoch, s.Loss, mt.BPC, mt.Perplexity, 100*s.TestAccuracy, s.SamplesPerSec*float64(spec.Context), s.Elapsed.Round(time.Second))
					return
				}
				fmt.Fprintf(e.stdout, "epoch %d  loss %.4f  test loss %.4f  test accuracy %.2f%%  %.0f samples/s  %s\n",
					s.Epoch, s.Loss, s.TestLoss, 100*s.TestAccuracy, s.SamplesPerSec, s.Elapsed.Round(time.Second))
			}, fitOpts...)
			if err != nil {
				return err
			}
			if evalSamples > 0 && evalSamples < testSet.N {
				tl, ta, err := m.Evaluate(testSet)
				if err != nil {
					return err
				}
				mt := train.MetricsOf(spec, tl, ta)
				if spec.Text() {
					fmt.Fprintf(e.stdout, "final: whole held-out set (%d windows): %.3f bits/char  perplexity %.2f  next-char accuracy %.2f%%\n", testSet.N, mt.BPC, mt.Perplexity, 100*ta)
				} else {
					fmt.Fprintf(e.stdout, "final: whole test set (%d samples): loss %.4f  accuracy %.2f%%\n", testSet.N, tl, 100*ta)
				}
			}
			if output == "" {
				return nil
			}
			canon, err := cfg.Canonical()
			if err != nil {
				return err
			}
			p := round.Provenance{Name: cfg.Name, Config: canon}
			if len(stats) > 0 {
				last := stats[len(stats)-1]
				p.Test = testMetric(testSet, testSet.Head(evalSamples).N, last.TestAccuracy, last.TestLoss)
			}
			if err := writeCheckpoint(output, spec, train.Snapshot(m), p); err != nil {
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
	cmd.Flags().DurationVar(&timeLimit, "time-limit", 0, "stop after this much training time (e.g. 20m), checked every 100 steps, and evaluate")
	cmd.Flags().IntVar(&evalSamples, "eval-samples", 0, "evaluate each epoch on the first N test samples only, and on all of them at the end")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the trained model to this safetensors file")
	cmd.Flags().StringVar(&output, "save", "", "the same as --output")
	cmd.Flags().IntVar(&limit, "limit", 0, "use only the first N training and test samples: images, or text windows (quick checks)")
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
	return fmt.Sprintf("load it in PyTorch with examples/python/load_checkpoint.py %s (or safetensors.torch.load_file(%q) into the module its metadata describes, strict=True)", path, path)
}
