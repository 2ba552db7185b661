//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts a demo child in its own process group, so that a
// Ctrl-C at the terminal reaches the demo alone and the demo stops its
// children once, in order, instead of every process receiving it at once.
func ownProcessGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
