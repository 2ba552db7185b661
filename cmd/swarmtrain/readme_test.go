package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
)

// readmeSteps returns the lines of the README's "A swarm by hand" block.
func readmeSteps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## A swarm by hand")
	if i < 0 {
		t.Fatal(`README.md has no "## A swarm by hand" section`)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	if start < 0 {
		t.Fatal(`README.md: "A swarm by hand" has no sh block`)
	}
	s = s[start+len("```sh\n"):]
	s = s[:strings.Index(s, "```")]
	return strings.Split(strings.TrimSpace(s), "\n")
}

var placeholderRE = regexp.MustCompile(`<([a-z-]+)>`)

// TestReadmeSwarmByHand runs the README's "A swarm by hand" lines as
// written, from a directory laid out like the repository (bin/swarmtrain,
// examples/): the long-running start and join in the background, every
// observer command to a zero exit, Ctrl-C where the README says so. The
// only change is the example's round count (3, not 30). Placeholders take
// what start printed; the join lines must be the one start printed.
func TestReadmeSwarmByHand(t *testing.T) {
	if raceEnabled {
		t.Skip("separate processes the race detector does not reach: skipped with -race")
	}
	testdata.MNISTDir(t)
	dataRoot := testdata.Root()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(builtBinary(t), filepath.Join(root, "bin", "swarmtrain")); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/mnist-mlp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	short := regexp.MustCompile(`(?m)^(  rounds: )30( )`).ReplaceAll(example, []byte("${1}3 ${2}"))
	if bytes.Equal(short, example) {
		t.Fatal("examples/mnist-mlp.yaml: no `rounds: 30` line to shorten")
	}
	os.MkdirAll(filepath.Join(root, "examples"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "examples", "mnist-mlp.yaml"), short, 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SWARMTRAIN_DATA="+dataRoot, "HOME="+root)
	command := func(args []string) *exec.Cmd {
		c := exec.Command(filepath.Join(root, args[0]), args[1:]...)
		c.Args[0] = args[0] // as typed: start prints its join line with it
		c.Dir, c.Env = root, env
		return c
	}
	vars := map[string]string{}
	subst := func(line string) string {
		return placeholderRE.ReplaceAllStringFunc(line, func(m string) string {
			v, ok := vars[m[1:len(m)-1]]
			if !ok {
				t.Fatalf("README line %q: nothing printed so far gives %s", line, m)
			}
			return v
		})
	}
	var coord *proc
	var joins []*proc
	exports := map[string][]byte{}
	for n, raw := range readmeSteps(t) {
		line := strings.TrimSpace(raw)
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case strings.HasPrefix(line, "#"):
			if strings.Contains(line, "Ctrl-C") {
				coord.cmd.Process.Signal(syscall.SIGINT)
				if err := coord.wait(t, time.Minute); err != nil {
					t.Fatalf("start after Ctrl-C: %v, want exit 0", err)
				}
				lines := strings.Split(coord.output(), "\n")
				if last := lines[len(lines)-1]; !strings.HasPrefix(last, "stopped: swarm "+vars["swarm-id"]+" sealed all 3 rounds; ledger and models saved in ./coord") {
					t.Fatalf("start's last line after Ctrl-C: %q", last)
				}
			}
			continue
		case strings.HasPrefix(line, "make "):
			continue // the test built bin/swarmtrain; SWARMTRAIN_DATA holds MNIST
		}
		args := strings.Fields(subst(line))
		if len(args) < 2 || args[0] != "bin/swarmtrain" {
			t.Fatalf("README line %d %q: not a bin/swarmtrain command", n+1, raw)
		}
		switch args[1] {
		case "start":
			coord = spawnCmd(t, command(args), filepath.Join(root, "start.log"))
			join := coord.waitLine(t, regexp.MustCompile(`^  (bin/swarmtrain join (\S+) --bootstrap (\S+) --data-dir \./peer1)$`), time.Minute)
			vars["swarm-id"], vars["multiaddr"] = join[2], join[3]
			vars["api-port"] = coord.waitLine(t, regexp.MustCompile(`^api: http://127\.0\.0\.1:(\d+)/v1/swarm$`), time.Second)[1]
			vars["printed join"] = join[1]
		case "join":
			if want := strings.Replace(vars["printed join"], "./peer1", args[len(args)-1], 1); strings.Join(args, " ") != want {
				t.Fatalf("README join line %q is not the line start printed (with its --data-dir): %q", strings.Join(args, " "), want)
			}
			p := spawnCmd(t, command(args), filepath.Join(root, fmt.Sprintf("join-%d.log", len(joins)+1)))
			p.waitLine(t, regexp.MustCompile(`^joined swarm `+vars["swarm-id"]), time.Minute)
			joins = append(joins, p)
		default:
			if _, ok := vars["model-cid"]; !ok {
				// Observers run once the swarm has done its rounds, so that
				// what they check is the whole ledger.
				vars["model-cid"] = coord.waitLine(t, regexp.MustCompile(`^final model (\S+);`), 5*time.Minute)[1]
				args = strings.Fields(subst(line))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			c := command(args)
			c = exec.CommandContext(ctx, c.Path, c.Args[1:]...)
			c.Dir, c.Env = root, env
			out, err := c.CombinedOutput()
			timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
			cancel()
			if err != nil || timedOut {
				t.Fatalf("README line %q: %v\n%s", line, err, out)
			}
			t.Logf("$ %s\n%s", line, out)
			if args[1] == "export" {
				b, err := os.ReadFile(filepath.Join(root, "model.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := safetensors.Decode(b); err != nil {
					t.Fatalf("%s wrote no safetensors file: %v", line, err)
				}
				exports[args[len(args)-2]] = b
			}
		}
	}
	if len(exports) != 2 || !bytes.Equal(exports["--bootstrap"], exports["--data-dir"]) {
		t.Errorf("export from the live swarm and from ./coord differ or did not both run (%d exports)", len(exports))
	}
	for i, p := range joins {
		if err := p.wait(t, time.Minute); err != nil {
			t.Errorf("contributor %d: %v, want exit 0 after the last round", i+1, err)
		}
	}
}
