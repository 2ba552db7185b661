package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/swarmtrain/swarmtrain/cmd/swarmtrain/internal/fetch"
	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/train/data"
)

func newDataCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Fetch and verify datasets",
	}
	var dir string
	var mirrors []string
	get := &cobra.Command{
		Use:   "get mnist",
		Short: "Download MNIST from the public mirrors and verify every file's SHA-256",
		Args:  datasetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				dir = config.Default().DataDir()
			}
			fileList := make([]fetch.File, 0, 4)
			for _, f := range data.MNISTFiles() {
				fileList = append(fileList, fetch.File{Name: f.Name, SHA256: f.SHA256})
			}
			tty := isTerminal(e.stdout)
			f := &fetch.Fetcher{
				Client:  &http.Client{Timeout: 5 * time.Minute},
				Mirrors: mirrors,
				Log: func(format string, a ...any) {
					if tty {
						fmt.Fprint(e.stdout, "\r\033[K") // clear the progress line
					}
					fmt.Fprintf(e.stdout, format+"\n", a...)
				},
			}
			if tty {
				f.Progress = terminalProgress(e)
			}
			if err := f.Get(cmd.Context(), dir, fileList); err != nil {
				if cmd.Context().Err() != nil {
					return err
				}
				// Offline machines end here: say how to do without a mirror.
				return fmt.Errorf("%w; without network, copy MNIST's four .gz files into %s, or point SWARMTRAIN_DATA at a folder holding mnist/, or name a mirror you can reach with --mirror URL", err, dir)
			}
			fmt.Fprintf(e.stdout, "MNIST ready in %s\n", dir)
			return nil
		},
	}
	get.Flags().StringVar(&dir, "dataset-dir", "", "where to put the files (default $SWARMTRAIN_DATA/mnist or ~/.cache/swarmtrain/data/mnist)")
	get.Flags().StringVar(&dir, "dir", "", "deprecated: use --dataset-dir")
	_ = get.Flags().MarkDeprecated("dir", "use --dataset-dir")
	get.Flags().StringSliceVar(&mirrors, "mirror", data.MNISTMirrors(), "base URLs to try, in order")

	var vdir string
	verify := &cobra.Command{
		Use:   "verify mnist",
		Short: "Check MNIST's files against their known SHA-256 sums",
		Args:  datasetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			why := "--dataset-dir"
			if vdir == "" {
				vdir, why = datasetDir(config.Default(), "", "")
			}
			trainSet, testSet, err := loadMNIST(vdir, why)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "MNIST in %s: %d training and %d test images, hashes ok\n", vdir, trainSet.N, testSet.N)
			return nil
		},
	}
	verify.Flags().StringVar(&vdir, "dataset-dir", "", "where the files are (default $SWARMTRAIN_DATA/mnist or ~/.cache/swarmtrain/data/mnist)")
	verify.Flags().StringVar(&vdir, "dir", "", "deprecated: use --dataset-dir")
	_ = verify.Flags().MarkDeprecated("dir", "use --dataset-dir")
	var hashKind string
	hash := &cobra.Command{
		Use:   "hash DIR",
		Short: "Print the data section that pins the dataset in DIR (kind, content hash, shape, classes)",
		Long: `hash reads the dataset in DIR as --kind says (idx: train-images-idx3-ubyte,
train-labels-idx1-ubyte, t10k- or test- images and labels, gzipped or not; text:
one .txt or .txt.gz file; mnist), and prints the data section a swarm config
needs: every peer must hold files with this content hash.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			kind := hashKind
			if kind == "" {
				kind = "idx"
				if spec, _, err := data.Describe("text", dir); err == nil && spec.Hash != "" {
					kind = "text"
				}
			}
			spec, tr, err := data.Describe(kind, dir)
			if err != nil {
				return err
			}
			name := filepath.Base(filepath.Clean(dir))
			fmt.Fprintf(e.stdout, "data:\n  name: %s\n  kind: %s\n  hash: %s\n", name, kind, spec.Hash)
			if !tr.IsText() {
				fmt.Fprintf(e.stdout, "  shape: [%d, %d]\n", spec.Rows, spec.Cols)
			}
			fmt.Fprintf(e.stdout, "  classes: %d\n", spec.Classes)
			if kind == "idx" {
				// The shortest form that reads back as the same float32,
				// the precision training normalises with.
				fmt.Fprintf(e.stdout, "  mean: %s\n  std: %s\n", strconv.FormatFloat(float64(tr.Mean), 'g', -1, 32), strconv.FormatFloat(float64(tr.Std), 'g', -1, 32))
			}
			if tr.IsText() {
				fmt.Fprintf(e.stdout, "# %d training characters, vocabulary of %d (with the unknown character)\n", len(tr.Tokens), spec.Classes)
			} else {
				fmt.Fprintf(e.stdout, "# %d training images of %dx%d, normalised with mean %.4f std %.4f\n", tr.N, tr.Rows, tr.Cols, tr.Mean, tr.Std)
			}
			return nil
		},
	}
	hash.Flags().StringVar(&hashKind, "kind", "", "dataset kind: idx, text or mnist (default: text when DIR holds one .txt or .txt.gz file, else idx)")
	cmd.AddCommand(get, verify, hash)
	return cmd
}

func datasetArg(_ *cobra.Command, args []string) error {
	if len(args) != 1 || args[0] != "mnist" {
		return fmt.Errorf("name the dataset: mnist (the only one so far)")
	}
	return nil
}

// terminalProgress redraws one line per download, at most once per percent.
func terminalProgress(e *env) func(name string, done, total int64) {
	lastName, lastPct := "", -1
	return func(name string, done, total int64) {
		if total <= 0 {
			return
		}
		pct := int(100 * done / total)
		if name == lastName && pct == lastPct {
			return
		}
		lastName, lastPct = name, pct
		fmt.Fprintf(e.stdout, "\r%s  %.1f / %.1f MB  %d%% ", name, float64(done)/1e6, float64(total)/1e6, pct)
	}
}
