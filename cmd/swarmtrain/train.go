package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/train"
)

func newTrainCmd(e *env) *cobra.Command {
	var cfgPath, datasetFlag, device, savePath string
	var epochs, limit, evalSamples int
	var timeLimit time.Duration
	cmd := &cobra.Command{
		Use:   "train --config FILE",
		Short: "Train in one process: the baseline swarm runs are judged against",
		Long: `train runs the config's model and inner optimizer on its whole dataset in
one process, printing loss, test accuracy (for text: held-out bits per character
and perplexity) and speed per epoch. It is the reference a swarm with the same
sample budget is compared with. --save FILE writes the final model as a
safetensors checkpoint (generate reads it).`,
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
			tty := isTerminal(e.stdout)
			_, err = train.Fit(cmd.Context(), m, opt, trainSet, testSet, cfg.Train.Epochs, cfg.Seed, func(s train.EpochStats) {
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
			if savePath == "" {
				return nil
			}
			file, err := round.CheckpointFile(spec, train.Snapshot(m))
			if err != nil {
				return err
			}
			if err := storage.WriteFileAtomic(savePath, file, 0o644); err != nil {
				return fmt.Errorf("--save: %w", err)
			}
			fmt.Fprintf(e.stdout, "model saved to %s\n", savePath)
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
	cmd.Flags().StringVar(&savePath, "save", "", "write the trained model to this safetensors file")
	cmd.Flags().IntVar(&limit, "limit", 0, "use only the first N training and test samples: images, or text windows (quick checks)")
	cmd.MarkFlagRequired("config")
	return cmd
}
