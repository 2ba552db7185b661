package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// The dataset's directory is --dataset-dir on every command. Older
// spellings stay as deprecated aliases: --mnist-dir (start, join, demo),
// --data-dir on train (which meant the dataset there, and the node's
// directory everywhere else) and --dir on data get and data verify.

const datasetHelp = "the dataset's directory (default: data.dir in the config, else $SWARMTRAIN_DATA/<data.name>, else ~/.cache/swarmtrain/data/<data.name>)"

// addDatasetFlag adds --dataset-dir to fs, bound to dir, with deprecated
// aliases bound to the same variable.
func addDatasetFlag(fs *pflag.FlagSet, dir *string, aliases ...string) {
	fs.StringVar(dir, "dataset-dir", "", datasetHelp)
	for _, a := range aliases {
		fs.StringVar(dir, a, "", "deprecated: use --dataset-dir")
		_ = fs.MarkDeprecated(a, "use --dataset-dir (--data-dir is a node's own directory on every command)")
	}
}

// datasetDir is where the dataset is looked for, and why there: the flag,
// the config's data.dir, $SWARMTRAIN_DATA, or the default.
func datasetDir(cfg *config.Swarm, flagDir, cfgPath string) (dir, why string) {
	switch {
	case flagDir != "":
		return flagDir, "--dataset-dir"
	case cfg.Data.Dir != "":
		return cfg.Data.Dir, "data.dir in " + cfgPath
	case os.Getenv("SWARMTRAIN_DATA") != "":
		return cfg.DataDir(), "$SWARMTRAIN_DATA/" + cfg.Data.Name
	}
	return cfg.DataDir(), "the default"
}

// loadDataset loads the dataset cfg pins from dir, checking its hash; when
// it is missing the one-line error says where it looked and why there.
func loadDataset(cfg *config.Swarm, dir, why string) (trainSet, testSet *data.Set, err error) {
	if cfg.DataKind() == "mnist" {
		return loadMNIST(dir, why)
	}
	trainSet, testSet, err = data.Load(round.DataSpec(cfg), dir)
	var missing *data.MissingError
	if errors.As(err, &missing) {
		return nil, nil, fmt.Errorf("dataset %s (data.kind %s) not found: no %s in %s (%s); point at it with --dataset-dir DIR, data.dir in the config, or SWARMTRAIN_DATA=DIR (a folder holding %s/)",
			cfg.Data.Name, cfg.DataKind(), missing.File, dir, why, cfg.Data.Name)
	}
	return trainSet, testSet, err
}

// loadMNIST loads MNIST from dir; when it is missing the one-line error
// says where it looked and why there, and every way out: a copy elsewhere
// (--dataset-dir, SWARMTRAIN_DATA) or fetching it (data get, --mirror).
func loadMNIST(dir, why string) (trainSet, testSet *data.Set, err error) {
	trainSet, testSet, err = data.LoadMNIST(dir)
	var missing *data.MissingError
	if errors.As(err, &missing) {
		return nil, nil, fmt.Errorf("MNIST not found: no %s in %s (%s); point at a copy with --dataset-dir DIR or SWARMTRAIN_DATA=DIR (a folder holding mnist/), or fetch it: swarmtrain data get mnist --dataset-dir %s (--mirror URL names a mirror you can reach)",
			missing.File, dir, why, dir)
	}
	return trainSet, testSet, err
}

// checkMNISTPresent fails like loadMNIST when a file is missing, without
// reading or hashing anything: for the demo, whose processes each load and
// verify the set themselves and whose first error is then the coordinator's.
func checkMNISTPresent(dir, why string) error {
	for _, f := range data.MNISTFiles() {
		_, gzErr := os.Stat(filepath.Join(dir, f.Name))
		_, rawErr := os.Stat(filepath.Join(dir, strings.TrimSuffix(f.Name, ".gz")))
		if gzErr != nil && rawErr != nil {
			_, _, err := loadMNIST(dir, why) // the same message as every command
			return err
		}
	}
	return nil
}

// absDir makes a dataset directory absolute, for a command line another
// process runs from elsewhere.
func absDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}
