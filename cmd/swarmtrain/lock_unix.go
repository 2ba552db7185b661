//go:build unix

package main

import (
	"os"
	"syscall"
)

// dirInUse reports whether a running node holds the block store lock in
// dir. LevelDB takes an exclusive flock on blocks/LOCK; trying the same lock
// (and releasing it at once) tells whether someone holds it.
func dirInUse(dir string) bool {
	f, err := os.OpenFile(lockFile(dir), os.O_RDWR, 0)
	if err != nil {
		return false // no store yet: nobody can hold it
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
