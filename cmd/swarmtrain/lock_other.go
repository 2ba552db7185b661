//go:build !unix

package main

// dirInUse cannot tell without flock; opening the store reports the lock.
func dirInUse(string) bool { return false }
