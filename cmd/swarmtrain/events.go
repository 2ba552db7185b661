package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/swarmtrain/swarmtrain/node"
)

// start --events FILE writes one JSON object per line for programs that
// follow a swarm (the demo, tests, scripts): the human lines on stdout may
// change, these fields do not. Every object has a "type":
//
//	ready         the swarm is up: swarm, name, addrs, api, data_dir
//	round_sealed  a round's record is stored: round, record, model,
//	              accepted, rejected, train_loss, test_loss,
//	              test_accuracy (0 to 1), bytes_in, seal_ms, sealed_by
//	              (quorum or deadline)
//	done          the last round is sealed: swarm, rounds, record, model
//	stopped       the coordinator returned: error ("" after a clean stop)
//
// FILE is created or truncated; it may be a pipe (/dev/fd/N).

type readyEvent struct {
	Type    string   `json:"type"`
	Swarm   string   `json:"swarm"`
	Name    string   `json:"name"`
	Addrs   []string `json:"addrs"`
	API     string   `json:"api"`
	DataDir string   `json:"data_dir"`
}

type roundSealedEvent struct {
	Type         string  `json:"type"`
	Round        int64   `json:"round"`
	Record       string  `json:"record"`
	Model        string  `json:"model"`
	Accepted     int     `json:"accepted"`
	Rejected     int     `json:"rejected"`
	TrainLoss    float64 `json:"train_loss"`
	TestLoss     float64 `json:"test_loss"`
	TestAccuracy float64 `json:"test_accuracy"`
	BytesIn      int     `json:"bytes_in"`
	SealMS       int64   `json:"seal_ms"`
	SealedBy     string  `json:"sealed_by"` // quorum or deadline
}

type doneEvent struct {
	Type   string `json:"type"`
	Swarm  string `json:"swarm"`
	Rounds int    `json:"rounds"`
	Record string `json:"record"`
	Model  string `json:"model"`
}

type stoppedEvent struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

// anyEvent is one decoded line: Type says which of the others it filled.
type anyEvent struct {
	Type    string
	Ready   readyEvent
	Sealed  roundSealedEvent
	Done    doneEvent
	Stopped stoppedEvent
}

func (a *anyEvent) UnmarshalJSON(b []byte) error {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	a.Type = t.Type
	switch t.Type {
	case "ready":
		return json.Unmarshal(b, &a.Ready)
	case "round_sealed":
		return json.Unmarshal(b, &a.Sealed)
	case "done":
		return json.Unmarshal(b, &a.Done)
	case "stopped":
		return json.Unmarshal(b, &a.Stopped)
	}
	return nil // a type added later: readers skip what they do not know
}

func newRoundSealedEvent(s node.RoundSummary) roundSealedEvent {
	return roundSealedEvent{Type: "round_sealed", Round: s.Round, Record: s.Record, Model: s.Model,
		Accepted: s.Accepted, Rejected: s.Rejected, TrainLoss: s.MeanLoss, TestLoss: s.TestLoss,
		TestAccuracy: s.TestAccuracy, BytesIn: s.BytesIn, SealMS: s.SealTime.Milliseconds(), SealedBy: s.SealedBy}
}

// eventLog writes events as JSON lines. A reader that goes away must not
// stop the swarm: after the first failed write it logs once and drops the
// rest.
type eventLog struct {
	mu   sync.Mutex
	w    io.WriteCloser
	path string
	log  *slog.Logger
}

// openEventLog opens path for events; "" gives a log that writes nothing.
func openEventLog(path string, log *slog.Logger) (*eventLog, error) {
	l := &eventLog{path: path, log: log}
	if path == "" {
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--events: %w", err)
	}
	l.w = f
	return l, nil
}

func (l *eventLog) emit(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err == nil {
		_, err = l.w.Write(append(b, '\n'))
	}
	if err != nil {
		l.log.Warn("--events: writing failed; no more events", "file", l.path, "err", err)
		l.w.Close()
		l.w = nil
	}
}

func (l *eventLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		l.w.Close()
		l.w = nil
	}
}
