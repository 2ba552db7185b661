// Command swarmtrain trains one model on many machines that do not trust
// each other. `swarmtrain --help` lists the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// env is what every command shares: where it writes and its logger.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	logLevel       string
}

// run executes the CLI with args and returns the exit code: 0 on success,
// 1 with one line "swarmtrain: <what went wrong>" on stderr otherwise.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "swarmtrain: %v\n", err)
		return 1
	}
	return 0
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "swarmtrain",
		Short: "Train one model on many machines that do not trust each other",
		Long: `swarmtrain is a peer-to-peer training runtime: peers find each other over a
Kademlia DHT, train locally, exchange compressed updates over gossipsub and
bitswap, and every contribution is checked, scored and recorded in a signed,
hash-linked ledger.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(e.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", e.logLevel)
			}
			e.log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.AddCommand(newVersionCmd(e), newTrainCmd(e), newDataCmd(e), newStartCmd(e), newJoinCmd(e), newScoresCmd(e), newLedgerCmd(e), newExportCmd(e), newDemoCmd(e))
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(e.stdout, "swarmtrain %s\n", version)
			return nil
		},
	}
}
