// Package config is the schema of a swarm: one YAML file that says which
// model to train on which data, how rounds run, how updates are compressed
// and checked, and how peers connect. Every default lives in Default, with
// its reason. The package imports nothing from the rest of swarmtrain.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Swarm is a whole swarm's configuration.
type Swarm struct {
	Name        string      `yaml:"name" json:"name"`
	Seed        uint64      `yaml:"seed" json:"seed"`
	Model       Model       `yaml:"model" json:"model"`
	Data        Data        `yaml:"data" json:"data"`
	Train       Train       `yaml:"train" json:"train"`
	Compression Compression `yaml:"compression" json:"compression"`
	Round       Round       `yaml:"round" json:"round"`
	Verify      Verify      `yaml:"verify" json:"verify"`
	Network     Network     `yaml:"network" json:"network"`
	API         API         `yaml:"api" json:"api"`
}

// Model picks a model from the registry.
type Model struct {
	Kind     string `yaml:"kind" json:"kind"`
	Hidden   []int  `yaml:"hidden,omitempty" json:"hidden,omitempty"`
	Channels []int  `yaml:"channels,omitempty" json:"channels,omitempty"`
	Dense    int    `yaml:"dense,omitempty" json:"dense,omitempty"`
	// A transformer's blocks, width, attention heads and context length.
	Layers  int `yaml:"layers,omitempty" json:"layers,omitempty"`
	Width   int `yaml:"width,omitempty" json:"width,omitempty"`
	Heads   int `yaml:"heads,omitempty" json:"heads,omitempty"`
	Context int `yaml:"context,omitempty" json:"context,omitempty"`
}

// Data says which dataset and where it is on this machine. `swarmtrain
// data hash DIR --kind K` prints the kind, hash, shape and classes of a
// user's files as a data section.
type Data struct {
	// Name names the dataset (its default directory is
	// $SWARMTRAIN_DATA/<name>).
	Name string `yaml:"name" json:"name"`
	// Kind is how its files are read: mnist, idx or text (default: mnist
	// when the name is mnist).
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty"`
	// Hash pins the files' content (train/data.ContentHash): every peer
	// must train on the same bytes for shards and tier 2 to mean anything.
	Hash string `yaml:"hash,omitempty" json:"hash,omitempty"`
	// Shape is an image's rows and cols (idx), Classes the number of
	// labels (idx) or the vocabulary size (text); the model's input and
	// output follow from them.
	Shape   []int `yaml:"shape,omitempty" json:"shape,omitempty"`
	Classes int   `yaml:"classes,omitempty" json:"classes,omitempty"`
	// Mean and Std normalise an idx dataset's pixels, (p/255 - Mean)/Std:
	// the training images' statistics, which swarmtrain data hash prints.
	// They are pinned here (and so in the swarm's identity) rather than
	// only computed on load because they change the model's inputs: a
	// checkpoint's metadata tells a PyTorch user these values, and every
	// peer trains with exactly them. MNIST has its fixed constants.
	Mean float64 `yaml:"mean,omitempty" json:"mean,omitempty"`
	Std  float64 `yaml:"std,omitempty" json:"std,omitempty"`
	// HeldOut is the fraction at the end of a text held out (default 0.1).
	HeldOut float64 `yaml:"held_out,omitempty" json:"held_out,omitempty"`
	// Dir holds the dataset's files. It is local to each machine, so it is
	// not part of the swarm's identity (Canonical leaves it out).
	Dir string `yaml:"dir,omitempty" json:"-"`
}

// Train sets the work: the baseline's epochs, a swarm's rounds and the
// inner and outer optimizers.
type Train struct {
	Epochs int `yaml:"epochs" json:"epochs"`
	// StepsPerEpoch makes the baseline's epoch that many steps instead of a
	// pass over the training set (a text has millions of windows: an epoch
	// is then the stretch between evaluations). 0: a pass.
	StepsPerEpoch int `yaml:"steps_per_epoch,omitempty" json:"steps_per_epoch,omitempty"`
	// LRSchedule shapes the baseline's learning rate over its epochs:
	// constant or cosine.
	LRSchedule     string    `yaml:"lr_schedule" json:"lr_schedule"`
	Rounds         int       `yaml:"rounds" json:"rounds"`
	InnerSteps     int       `yaml:"inner_steps" json:"inner_steps"`
	BatchSize      int       `yaml:"batch_size" json:"batch_size"`
	ShardSize      int       `yaml:"shard_size" json:"shard_size"`
	InnerOptimizer Optimizer `yaml:"inner_optimizer" json:"inner_optimizer"`
	OuterOptimizer Optimizer `yaml:"outer_optimizer" json:"outer_optimizer"`
}

// Optimizer configures an inner (sgd, momentum, adam) or outer (nesterov,
// sgd) optimizer.
type Optimizer struct {
	Name        string  `yaml:"name" json:"name"`
	LR          float64 `yaml:"lr" json:"lr"`
	Momentum    float64 `yaml:"momentum,omitempty" json:"momentum,omitempty"`
	Beta1       float64 `yaml:"beta1,omitempty" json:"beta1,omitempty"`
	Beta2       float64 `yaml:"beta2,omitempty" json:"beta2,omitempty"`
	Eps         float64 `yaml:"eps,omitempty" json:"eps,omitempty"`
	WeightDecay float64 `yaml:"weight_decay,omitempty" json:"weight_decay,omitempty"`
}

// Compression picks the codec of pseudo-gradients.
type Compression struct {
	Codec          string  `yaml:"codec" json:"codec"`
	Density        float64 `yaml:"density" json:"density"`
	ErrorFeedback  bool    `yaml:"error_feedback" json:"error_feedback"`
	InlineMaxBytes int     `yaml:"inline_max_bytes" json:"inline_max_bytes"`
	// MinDensity is how sparse a contributor on a slow link may be made:
	// each round its payload could not be fetched in time halves the
	// density it must send at, never below this (round.Params.DensityFor;
	// top-k codecs only). 0, the default, means Density: off. Every peer
	// must agree on it (it bounds what tier 1 accepts), so it is part of
	// the canonical form; omitted when 0, so swarms that leave it off keep
	// their IDs.
	MinDensity float64 `yaml:"min_density,omitempty" json:"min_density,omitempty"`
}

// Round sets when a round seals: once Quorum peers have contributed
// (accepted or not; verdicts are given at the seal), or at the Deadline if
// at least MinContributions have.
type Round struct {
	Deadline         Duration `yaml:"deadline" json:"deadline"`
	Quorum           int      `yaml:"quorum" json:"quorum"`
	MinContributions int      `yaml:"min_contributions" json:"min_contributions"`
	// Overlap runs overlapped rounds: a contributor starts round r+1's
	// local work while round r is sealed, from the model it holds (round
	// r's base), and round r+1 applies that update to its own base
	// (one-step-delayed application; round.Params.Built). Off by default:
	// it changes what every peer accepts, so it is canonical (omitted when
	// off, so swarm IDs without it are unchanged). Only with sparse codecs:
	// dense updates applied a round late diverge (benchmarks/README.md,
	// "Overlapped rounds"); outer momentum 0.8 is the measured setting.
	Overlap bool `yaml:"overlap,omitempty" json:"overlap,omitempty"`
}

// Verify sets the checks and the aggregation rule. Tier2Sample is how many
// accepted contributions per round tier 2 evaluates on data (0: none).
type Verify struct {
	Aggregation  string  `yaml:"aggregation" json:"aggregation"`
	TrimFraction float64 `yaml:"trim_fraction" json:"trim_fraction"`
	Tier2Sample  int     `yaml:"tier2_sample" json:"tier2_sample"`
	// Audits is how many contributions per round tier 3 recomputes
	// (round.Audit; 0: none). With audits on, every contribution must
	// commit to its private start and end state.
	Audits int `yaml:"audits,omitempty" json:"audits,omitempty"`
	// ExcludeRounds is how many rounds a peer's contributions are refused
	// after its first proven fault, doubling with each further one (0: no
	// exclusion).
	ExcludeRounds int `yaml:"exclude_rounds,omitempty" json:"exclude_rounds,omitempty"`
	// ReferenceFraction is tier 2's bar: how much of the round's aggregate
	// improvement a sampled update must achieve on its own shard (0: the
	// default, 0.35, measured on MNIST MLPs; see verify.ReferenceFraction).
	ReferenceFraction float64 `yaml:"reference_fraction,omitempty" json:"reference_fraction,omitempty"`
	// AuditTolerance is how far (relative L2) a tier-3 replay may land from
	// the audited payload and end state and still pass, so an auditor on
	// another build (OpenBLAS, a GPU) does not prove an honest peer faulty
	// (0: the default, 0.01; see round.DefaultAuditTolerance). Every peer
	// must apply the same rule, so it is part of the swarm's identity.
	AuditTolerance float64 `yaml:"audit_tolerance,omitempty" json:"audit_tolerance,omitempty"`
	// PeerAudits has every contributor recompute one other contribution of
	// the previous round and sign its verdict into its next contribution;
	// the coordinator referees a failing or disputed verdict and the loser
	// takes a proven fault (round.PeerAuditAssignment). Needs audits >= 1:
	// contributions must commit to their state. Off by default: it doubles
	// each contributor's compute.
	PeerAudits bool `yaml:"peer_audits,omitempty" json:"peer_audits,omitempty"`
}

// Network says where a node listens and whom it asks first. It is local to
// each node and left out of the swarm's identity.
type Network struct {
	Listen    []string `yaml:"listen" json:"-"`
	Bootstrap []string `yaml:"bootstrap" json:"-"`
	// Relay is how this node crosses NATs: serve (publicly reachable: a
	// limited relay for the others), use (behind a NAT: reserve a relay
	// slot on the bootstrap peers), auto (AutoNAT decides), off.
	Relay string `yaml:"relay" json:"-"`
	// Announce replaces the addresses this node advertises (a port
	// forward, a public address it cannot see itself).
	Announce        []string `yaml:"announce" json:"-"`
	MaxMessageBytes int      `yaml:"max_message_bytes" json:"max_message_bytes"`
}

// API is the node's HTTP API; an empty Listen disables it.
type API struct {
	Listen string `yaml:"listen" json:"-"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 30s or 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the configuration every file is read over.
func Default() *Swarm {
	return &Swarm{
		Name: "swarm",
		Seed: 1,
		// The MLP is the model that trains fast on a CPU core; the examples
		// show the cnn.
		Model: Model{Kind: "mlp", Hidden: []int{256, 128}},
		Data:  Data{Name: "mnist"},
		Train: Train{
			// 5 epochs reach 97.5 % with the default MLP (README figures).
			Epochs: 5,
			// Annealing to 0 lets the last epoch settle instead of bouncing
			// around the minimum: +0.3 points on the MLP at 5 epochs.
			LRSchedule: "cosine",
			Rounds:     30,
			// H = 20 inner steps: DiLoCo's traffic saving with little loss
			// of accuracy on MNIST (benchmarks/README.md).
			InnerSteps: 20,
			BatchSize:  64,
			// Enough samples for 20 inner steps of 64 without repeats
			// (1280) with room to spare.
			ShardSize:      2000,
			InnerOptimizer: Optimizer{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
			// OpenDiLoCo's outer optimizer: Nesterov, lr 0.7, momentum 0.9.
			OuterOptimizer: Optimizer{Name: "nesterov", LR: 0.7, Momentum: 0.9},
		},
		// 1 % top-k with int8 values is ~170x smaller than dense fp32;
		// error feedback keeps what it drops for later rounds.
		Compression: Compression{Codec: "topk+int8", Density: 0.01, ErrorFeedback: true, InlineMaxBytes: 64 << 10},
		// A round never waits long for a slow or dead peer.
		Round:  Round{Deadline: Duration(30 * time.Second), Quorum: 4, MinContributions: 1},
		Verify: Verify{Aggregation: "clip-mean", TrimFraction: 0.2, Tier2Sample: 2},
		Network: Network{
			Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
			// A config file is the coordinator's: it is the swarm's entry
			// point and reachable by everyone who joins, so it relays for
			// peers behind NAT (within p2p.RelayResources).
			Relay: "serve",
			// gossipsub's own default is 1 MiB; payloads above the inline
			// limit travel by CID over bitswap, never in a message.
			MaxMessageBytes: 1 << 20,
		},
		API: API{Listen: "127.0.0.1:0"},
	}
}

// Load reads and validates the YAML file at path over the defaults.
func Load(path string) (*Swarm, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, path)
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)
var unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type config\.(\w+)$`)

// Parse reads YAML bytes over the defaults and validates the result; source
// names the bytes in errors (usually the file path).
func Parse(b []byte, source string) (*Swarm, error) {
	s := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) { // empty file: all defaults
		return nil, yamlError(source, b, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return s, nil
}

// sectionOf returns the YAML path of the mapping that holds key at line,
// e.g. "train.inner_optimizer", found by walking the document's nodes
// (yaml.v3's error names only the Go type, which two sections may share).
// It falls back to the Go type's name when the key cannot be found.
func sectionOf(doc []byte, line int, key, goType string) string {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err == nil {
		if path, ok := findKey(&root, line, key, ""); ok {
			if path == "" {
				return "the top level"
			}
			return path
		}
	}
	if goType == "Swarm" {
		return "the top level"
	}
	return strings.ToLower(goType)
}

// findKey searches n for a mapping key named key on line and returns the
// dotted path of the mapping that holds it.
func findKey(n *yaml.Node, line int, key, path string) (string, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := findKey(c, line, key, path); ok {
				return p, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Line == line && k.Value == key {
				return path, true
			}
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			if p, ok := findKey(v, line, key, sub); ok {
				return p, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p, ok := findKey(c, line, key, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// yamlError turns yaml.v3's errors into one line per problem that names the
// file, the line and the field.
func yamlError(source string, doc []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%s:%s: %s", source, m[1], m[2])
		}
		return fmt.Errorf("%s: %s", source, msg)
	}
	var lines []string
	for _, e := range te.Errors {
		m := yamlLineRE.FindStringSubmatch(e)
		if m == nil {
			lines = append(lines, fmt.Sprintf("%s: %s", source, e))
			continue
		}
		msg := m[2]
		if f := unknownFieldRE.FindStringSubmatch(msg); f != nil {
			line, _ := strconv.Atoi(m[1])
			msg = fmt.Sprintf("unknown field %q in %s", f[1], sectionOf(doc, line, f[1], f[2]))
		}
		lines = append(lines, fmt.Sprintf("%s:%s: %s", source, m[1], msg))
	}
	return errors.New(strings.Join(lines, "; "))
}

// DataKind is the dataset's kind: data.kind, or mnist for the dataset
// named mnist.
func (s *Swarm) DataKind() string {
	if s.Data.Kind == "" && s.Data.Name == "mnist" {
		return "mnist"
	}
	return s.Data.Kind
}

// DataDir returns the dataset directory: data.dir if set, else
// $SWARMTRAIN_DATA/<name>, else ~/.cache/swarmtrain/data/<name>.
func (s *Swarm) DataDir() string {
	if s.Data.Dir != "" {
		return s.Data.Dir
	}
	if root := os.Getenv("SWARMTRAIN_DATA"); root != "" {
		return filepath.Join(root, s.Data.Name)
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "swarmtrain", "data", s.Data.Name)
	}
	return filepath.Join(".swarmtrain", "data", s.Data.Name)
}

// Canonical is the deterministic encoding of the parts of the config every
// peer must agree on (JSON with the struct's fixed field order; machine-local
// fields such as data.dir and network addresses are left out). The swarm
// manifest carries it; its hash is part of the swarm's identity.
func (s *Swarm) Canonical() ([]byte, error) {
	return json.Marshal(s)
}

// FromCanonical decodes what Canonical wrote (a swarm manifest's config) and
// validates it, filling machine-local fields with defaults.
func FromCanonical(b []byte) (*Swarm, error) {
	s := Default()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("swarm manifest config: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("swarm manifest config: %w", err)
	}
	return s, nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
