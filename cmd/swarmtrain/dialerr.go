package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// errorLine is err as the one line swarmtrain prints. libp2p's dial errors
// span a line per address tried and repeat the peer ID the user just typed;
// they become one short reason per address.
func errorLine(err error) string {
	msg := err.Error()
	var de *swarm.DialError
	if errors.As(err, &de) {
		msg = strings.Replace(msg, de.Error(), dialReasons(de), 1)
	}
	return singleLine(msg)
}

// dialReasons says why each address of a failed dial failed.
func dialReasons(de *swarm.DialError) string {
	var parts []string
	for _, te := range de.DialErrors {
		parts = append(parts, fmt.Sprintf("%s at %s", dialReason(te.Cause), te.Address))
	}
	if de.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d more addresses", de.Skipped))
	}
	if len(parts) == 0 && de.Cause != nil {
		return dialReason(de.Cause)
	}
	return strings.Join(parts, "; ")
}

func dialReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens there)"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "no answer (timed out)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	}
	return singleLine(err.Error())
}
