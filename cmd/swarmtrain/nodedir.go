package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// A node's directory (--data-dir) holds its identity, its blocks and, for
// a coordinator, the ledger. One process at a time may use it: the block
// store holds a lock on it.

// nodeDirRoot is where nodes keep their directories unless --data-dir says
// otherwise.
func nodeDirRoot() string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".swarmtrain")
	}
	return ".swarmtrain"
}

// defaultNodeDir is a role's default directory: ~/.swarmtrain/<role>.
func defaultNodeDir(role string) string {
	return filepath.Join(nodeDirRoot(), role)
}

// freeNodeDir returns the role's first default directory no running node
// uses: ~/.swarmtrain/<role>, then <role>-2, <role>-3, ... so that a second
// contributor started on the same machine without --data-dir gets its own
// identity instead of failing on the first one's lock.
func freeNodeDir(role string) string {
	for i := 1; ; i++ {
		d := defaultNodeDir(role)
		if i > 1 {
			d += "-" + strconv.Itoa(i)
		}
		if !dirInUse(d) {
			return d
		}
	}
}

// lockFile is the block store's lock inside a node's directory.
func lockFile(dir string) string { return filepath.Join(dir, "blocks", "LOCK") }

var trailingNumber = regexp.MustCompile(`^(.*?)(\d+)$`)

// siblingDir suggests a directory beside dir that no node uses: peer1 ->
// peer2, coord -> coord-2.
func siblingDir(dir string) string {
	base, n := dir, 1
	if m := trailingNumber.FindStringSubmatch(dir); m != nil {
		base = m[1]
		n, _ = strconv.Atoi(m[2])
	} else {
		base += "-"
	}
	for i := n + 1; ; i++ {
		d := base + strconv.Itoa(i)
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			return d
		}
	}
}

// checkNodeDirFree fails, saying what to do, when a running node uses dir.
func checkNodeDirFree(dir, role string) error {
	if !dirInUse(dir) {
		return nil
	}
	if role == "contributor" {
		return fmt.Errorf("--data-dir %s is in use by another running swarmtrain: give each contributor on this machine its own, e.g. --data-dir %s", dir, siblingDir(dir))
	}
	return fmt.Errorf("--data-dir %s is in use by another running swarmtrain: stop it, or give this %s another --data-dir", dir, role)
}

// claimNodeDir notes whether dir is new to this run (absent, or an empty
// directory) and returns a function that removes what this run created
// there: a node that fails before it is of any use must not leave a fresh
// directory with a key behind. It never touches a directory that held
// anything before.
func claimNodeDir(dir string) (undo func()) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return func() {
			if !dirInUse(dir) { // another node may have started there since
				os.RemoveAll(dir)
			}
		}
	case err == nil && len(entries) == 0:
		return func() {
			if dirInUse(dir) {
				return
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	return func() {}
}
