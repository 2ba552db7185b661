package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/node"
	"github.com/swarmtrain/swarmtrain/train"
)

func newTrainCmd(e *env) *cobra.Command {
	var cfgPath, datasetFlag, device string
	var epochs, limit int
	cmd := &cobra.Command{
		Use:   "train --config FILE",
		Short: "Train in one process: the baseline swarm runs are judged against",
		Long: `train runs the config's model and inner optimizer on all of MNIST in one
process, printing loss, test accuracy and speed per epoch. It is the reference
a swarm with the same sample budget is compared with.`,
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
				fmt.Fprintf(e.stdout, "epoch %d  loss %.4f  test loss %.4f  test accuracy %.2f%%  %.0f samples/s  %s\n",
					s.Epoch, s.Loss, s.TestLoss, 100*s.TestAccuracy, s.SamplesPerSec, s.Elapsed.Round(time.Second))
			}, fitOpts...)
			return err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "swarm config (YAML); see examples/")
	// train's --data-dir meant the dataset; it stays as a deprecated alias.
	addDatasetFlag(cmd.Flags(), &datasetFlag, "data-dir")
	cmd.Flags().StringVar(&device, "device", "cpu", "where steps run: cpu, cuda or cuda:N")
	cmd.Flags().IntVar(&epochs, "epochs", 0, "override train.epochs")
	cmd.Flags().IntVar(&limit, "limit", 0, "use only the first N training and test images (quick checks)")
	cmd.MarkFlagRequired("config")
	return cmd
}
