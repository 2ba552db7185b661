// Command swarmtrain trains one model on many machines that do not trust
// each other. `swarmtrain --help` lists the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
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

// run executes the CLI with args and returns the exit code: 0 on success
// and after an interrupt the user asked for (Ctrl-C, SIGTERM), 1 with one
// line "swarmtrain: <what went wrong>" on stderr otherwise.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal asks for a clean stop; a second one gets the default
	// action, so that a stop that takes too long can always be cut short.
	context.AfterFunc(ctx, stop)
	e := &env{stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// A command that has something to say about an interrupt (what it
		// saved) says it and returns nil; this is the fallback.
		fmt.Fprintln(stderr, "swarmtrain: interrupted")
		return 0
	}
	fmt.Fprintf(stderr, "swarmtrain: %s\n", errorLine(err))
	return 1
}

// singleLine joins a multi-line error (libp2p's dial errors list one line per
// address tried) into one line, so that every failure is one line.
func singleLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimSpace(strings.TrimPrefix(l, "* "))
		if l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// interrupted reports whether the command's context ended because the user
// asked the process to stop (the root context ends only on a signal).
func interrupted(cmd *cobra.Command) bool {
	return cmd.Context().Err() != nil
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "swarmtrain",
		Short: "Train one model on many machines that do not trust each other",
		Long: `swarmtrain is a peer-to-peer training runtime: peers find each other over a
Kademlia DHT, train locally, exchange compressed updates over gossipsub and
bitswap, and every contribution is checked, scored and recorded in a signed,
hash-linked ledger.

Two directories, two flags, the same on every command: --data-dir is a node's
own directory (identity, blocks, ledger); --dataset-dir is where the dataset is.`,
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
	root.AddCommand(newVersionCmd(e), newTrainCmd(e), newDataCmd(e), newStartCmd(e), newJoinCmd(e), newScoresCmd(e), newLedgerCmd(e), newExportCmd(e), newGenerateCmd(e), newDemoCmd(e))
	return root
}

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the module's build info.
var version = ""

// versionString is the module version, the VCS revision and time the
// binary was built from (when the build recorded them) and the Go version.
func versionString() string {
	v, extra := version, []string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			extra = append(extra, "commit "+rev)
		}
		if at != "" {
			extra = append(extra, at)
		}
		if modified == "true" {
			extra = append(extra, "modified")
		}
	}
	if v == "" {
		v = "(devel)"
	}
	s := "swarmtrain " + v
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(e.stdout, versionString())
			return nil
		},
	}
}
