package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
)

// Names the rest of swarmtrain understands; kept here so a config is
// rejected at load time rather than rounds later.
var (
	modelKinds   = []string{"mlp", "cnn", "transformer"}
	datasets     = []string{"mnist", "idx", "text"}
	innerOpts    = []string{"sgd", "momentum", "adam"}
	outerOpts    = []string{"nesterov", "sgd"}
	codecs       = []string{"dense", "fp16", "int8", "topk", "topk+int8", "topk+fp16", "topk+int2"}
	aggregations = []string{"mean", "clip-mean", "trimmed-mean", "median"}
)

// Choices are the names each enumerated setting accepts.
type Choices struct {
	ModelKinds, Datasets, InnerOptimizers, OuterOptimizers, Codecs, Aggregations []string
}

// Accepted returns every name a config accepts, so that the packages
// that implement them can test that each one works.
func Accepted() Choices {
	return Choices{ModelKinds: slices.Clone(modelKinds), Datasets: slices.Clone(datasets), InnerOptimizers: slices.Clone(innerOpts),
		OuterOptimizers: slices.Clone(outerOpts), Codecs: slices.Clone(codecs), Aggregations: slices.Clone(aggregations)}
}

// fieldError names the YAML path of the field that is wrong.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func oneOf(field, v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fieldError(field, "unknown value %q (want one of %v)", v, allowed)
}

func positive(field string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return fieldError(field, "must be > 0, got %v", v)
	}
	return nil
}

func unit(field string, v float64) error {
	if v < 0 || v >= 1 {
		return fieldError(field, "must be in [0, 1), got %v", v)
	}
	return nil
}

// Validate checks every field and returns the first problem, named by its
// YAML path.
func (s *Swarm) Validate() error {
	checks := []func() error{
		func() error {
			if s.Name == "" {
				return fieldError("name", "must not be empty")
			}
			return nil
		},
		func() error { return oneOf("model.kind", s.Model.Kind, modelKinds) },
		s.validateModel,
		s.validateData,
		s.validateTrain,
		func() error { return validateOptimizer("train.inner_optimizer", s.Train.InnerOptimizer, innerOpts) },
		func() error { return validateOptimizer("train.outer_optimizer", s.Train.OuterOptimizer, outerOpts) },
		s.validateCompression,
		s.validateRound,
		s.validateVerify,
		s.validateNetwork,
	}
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Swarm) validateModel() error {
	m := s.Model
	switch m.Kind {
	case "mlp":
		if len(m.Hidden) == 0 {
			return fieldError("model.hidden", "an mlp needs at least one hidden layer")
		}
		for i, h := range m.Hidden {
			if h <= 0 {
				return fieldError(fmt.Sprintf("model.hidden[%d]", i), "must be > 0, got %d", h)
			}
		}
	case "cnn":
		if len(m.Channels) != 2 {
			return fieldError("model.channels", "a cnn needs 2 convolution widths, got %d", len(m.Channels))
		}
		for i, c := range m.Channels {
			if c <= 0 {
				return fieldError(fmt.Sprintf("model.channels[%d]", i), "must be > 0, got %d", c)
			}
		}
		if m.Dense <= 0 {
			return fieldError("model.dense", "must be > 0, got %d", m.Dense)
		}
	case "transformer":
		for _, f := range []struct {
			name string
			v    int
			max  int
		}{{"model.layers", m.Layers, 256}, {"model.width", m.Width, 1 << 14}, {"model.heads", m.Heads, 256}, {"model.context", m.Context, 1 << 14}} {
			if f.v <= 0 || f.v > f.max {
				return fieldError(f.name, "must be in 1..%d, got %d", f.max, f.v)
			}
		}
		if m.Width%m.Heads != 0 {
			return fieldError("model.heads", "%d heads do not divide model.width %d", m.Heads, m.Width)
		}
	}
	return nil
}

var dataNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// validateData checks the dataset section and that the model can read the
// dataset (images for mlp and cnn, text for the transformer).
func (s *Swarm) validateData() error {
	d := s.Data
	if !dataNameRE.MatchString(d.Name) {
		return fieldError("data.name", "%q is not a dataset name (letters, digits, '.', '_', '-')", d.Name)
	}
	kind := s.DataKind()
	if kind == "" {
		return fieldError("data.kind", "required for dataset %q (want one of %v; swarmtrain data hash DIR --kind K prints the whole data section)", d.Name, datasets[1:])
	}
	if err := oneOf("data.kind", kind, datasets); err != nil {
		return err
	}
	if d.Hash != "" && !hashRE.MatchString(d.Hash) {
		return fieldError("data.hash", "want 64 lower-case hex digits (swarmtrain data hash DIR prints it), got %q", d.Hash)
	}
	if kind != "mnist" && d.Hash == "" {
		return fieldError("data.hash", "required for a %s dataset: every peer must hold the same bytes (swarmtrain data hash DIR --kind %s prints it)", kind, kind)
	}
	if d.Classes != 0 && (d.Classes < 2 || d.Classes > 256) {
		return fieldError("data.classes", "must be in 2..256, got %d", d.Classes)
	}
	switch kind {
	case "mnist":
		if (d.Shape != nil && !slices.Equal(d.Shape, []int{28, 28})) || (d.Classes != 0 && d.Classes != 10) {
			return fieldError("data.shape", "MNIST is 28x28 with 10 classes; for other IDX files set data.kind: idx")
		}
	case "idx":
		if len(d.Shape) != 2 || d.Shape[0] <= 0 || d.Shape[1] <= 0 {
			return fieldError("data.shape", "an idx dataset needs [rows, cols], got %v", d.Shape)
		}
		if d.Classes == 0 {
			return fieldError("data.classes", "required for an idx dataset (the number of labels)")
		}
		if d.Std == 0 {
			return fieldError("data.std", "required for an idx dataset (with data.mean, the training images' normalisation, which swarmtrain data hash DIR prints)")
		}
		if !(d.Mean >= 0 && d.Mean <= 1) {
			return fieldError("data.mean", "the training pixels' mean, in [0, 1], got %v", d.Mean)
		}
		if !(d.Std > 0 && d.Std <= 1) {
			return fieldError("data.std", "the training pixels' standard deviation, in (0, 1], got %v", d.Std)
		}
	case "text":
		if d.Shape != nil {
			return fieldError("data.shape", "a text dataset has no image shape")
		}
		if d.Classes == 0 {
			return fieldError("data.classes", "required for a text dataset (its vocabulary size, which swarmtrain data hash prints)")
		}
	}
	if kind != "idx" && (d.Mean != 0 || d.Std != 0) {
		field := "data.mean"
		if d.Mean == 0 {
			field = "data.std"
		}
		return fieldError(field, "only an idx dataset is normalised by the config (%s's is fixed)", kind)
	}
	if d.HeldOut < 0 || d.HeldOut >= 1 || (d.HeldOut != 0 && kind != "text") {
		return fieldError("data.held_out", "a text dataset's held-out fraction, in (0, 1), got %v", d.HeldOut)
	}
	isText, isLM := kind == "text", s.Model.Kind == "transformer"
	if isText != isLM {
		if isText {
			return fieldError("model.kind", "%s reads images; a text dataset needs a transformer", s.Model.Kind)
		}
		return fieldError("model.kind", "a transformer reads text; data.kind is %s", kind)
	}
	if s.Model.Kind == "cnn" && kind == "idx" && (d.Shape[0]%4 != 0 || d.Shape[1]%4 != 0) {
		return fieldError("data.shape", "a cnn pools twice by 2, so rows and cols must be multiples of 4, got %v", d.Shape)
	}
	return nil
}

func (s *Swarm) validateTrain() error {
	t := s.Train
	for _, f := range []struct {
		name string
		v    int
	}{{"train.epochs", t.Epochs}, {"train.rounds", t.Rounds}, {"train.inner_steps", t.InnerSteps}, {"train.batch_size", t.BatchSize}, {"train.shard_size", t.ShardSize}} {
		if f.v <= 0 {
			return fieldError(f.name, "must be > 0, got %d", f.v)
		}
	}
	if err := oneOf("train.lr_schedule", t.LRSchedule, []string{"constant", "cosine"}); err != nil {
		return err
	}
	if t.StepsPerEpoch < 0 {
		return fieldError("train.steps_per_epoch", "must be >= 0, got %d", t.StepsPerEpoch)
	}
	if t.ShardSize < t.BatchSize {
		return fieldError("train.shard_size", "must be at least train.batch_size (%d), got %d", t.BatchSize, t.ShardSize)
	}
	return nil
}

func validateOptimizer(field string, o Optimizer, names []string) error {
	if err := oneOf(field+".name", o.Name, names); err != nil {
		return err
	}
	if err := positive(field+".lr", o.LR); err != nil {
		return err
	}
	if err := unit(field+".momentum", o.Momentum); err != nil {
		return err
	}
	if o.WeightDecay < 0 {
		return fieldError(field+".weight_decay", "must be >= 0, got %v", o.WeightDecay)
	}
	if o.Name == "adam" {
		if err := unit(field+".beta1", o.Beta1); err != nil {
			return err
		}
		if err := unit(field+".beta2", o.Beta2); err != nil {
			return err
		}
		if err := positive(field+".eps", o.Eps); err != nil {
			return err
		}
	}
	return nil
}

func (s *Swarm) validateCompression() error {
	c := s.Compression
	if err := oneOf("compression.codec", c.Codec, codecs); err != nil {
		return err
	}
	if !(c.Density > 0 && c.Density <= 1) {
		return fieldError("compression.density", "must be in (0, 1], got %v", c.Density)
	}
	if !(c.MinDensity >= 0 && c.MinDensity <= c.Density) {
		return fieldError("compression.min_density", "must be in (0, compression.density=%v], or 0 for off, got %v", c.Density, c.MinDensity)
	}
	if c.InlineMaxBytes < 0 {
		return fieldError("compression.inline_max_bytes", "must be >= 0, got %d", c.InlineMaxBytes)
	}
	if c.InlineMaxBytes > s.Network.MaxMessageBytes/2 {
		return fieldError("compression.inline_max_bytes", "must be at most half of network.max_message_bytes (%d), got %d", s.Network.MaxMessageBytes/2, c.InlineMaxBytes)
	}
	return nil
}

func (s *Swarm) validateRound() error {
	r := s.Round
	if r.Deadline <= 0 {
		return fieldError("round.deadline", "must be > 0, got %v", r.Deadline.D())
	}
	if r.Quorum < 1 {
		return fieldError("round.quorum", "must be >= 1, got %d", r.Quorum)
	}
	if r.MinContributions < 1 || r.MinContributions > r.Quorum {
		return fieldError("round.min_contributions", "must be in [1, round.quorum=%d], got %d", r.Quorum, r.MinContributions)
	}
	if r.Overlap && !strings.HasPrefix(s.Compression.Codec, "topk") {
		// Measured in benchmarks/sim -overlap: a stale dense update under
		// outer momentum overshoots (diverges at lr 0.7, -13 points at
		// 0.35), while a sparse one moves few coordinates and error
		// feedback returns what it missed.
		return fieldError("round.overlap", "needs a sparse codec (topk, topk+int8, topk+fp16, topk+int2), got compression.codec %q: dense updates applied a round late diverge", s.Compression.Codec)
	}
	if r.Overlap && s.Verify.PeerAudits {
		// A peer audit judges the round before from the record the auditor
		// applies; an overlapped contributor has already done its next work
		// by then, so there is nowhere to send the verdict in time.
		return fieldError("round.overlap", "cannot be used with verify.peer_audits yet (peer verdicts travel with the next round's work, which an overlapped round has already done)")
	}
	return nil
}

func (s *Swarm) validateVerify() error {
	v := s.Verify
	if err := oneOf("verify.aggregation", v.Aggregation, aggregations); err != nil {
		return err
	}
	if v.TrimFraction < 0 || v.TrimFraction >= 0.5 {
		return fieldError("verify.trim_fraction", "must be in [0, 0.5), got %v", v.TrimFraction)
	}
	if v.ReferenceFraction < 0 || v.ReferenceFraction > 10 {
		return fieldError("verify.reference_fraction", "must be in [0, 10], got %v", v.ReferenceFraction)
	}
	// Above 0.1 the rule nears what an attack moves (the closest measured
	// attack replays 0.94 from its payload): an audit would prove little.
	if v.AuditTolerance < 0 || v.AuditTolerance > 0.1 {
		return fieldError("verify.audit_tolerance", "must be in [0, 0.1], got %v", v.AuditTolerance)
	}
	if v.Tier2Sample < 0 {
		return fieldError("verify.tier2_sample", "must be >= 0, got %d", v.Tier2Sample)
	}
	if v.Audits < 0 {
		return fieldError("verify.audits", "must be >= 0, got %d", v.Audits)
	}
	if v.PeerAudits && v.Audits < 1 {
		return fieldError("verify.peer_audits", "needs verify.audits >= 1 (contributions must commit to their state), got %d", v.Audits)
	}
	if v.ExcludeRounds < 0 || v.ExcludeRounds > 1<<20 {
		return fieldError("verify.exclude_rounds", "must be in [0, 1048576], got %d", v.ExcludeRounds)
	}
	return nil
}

func (s *Swarm) validateNetwork() error {
	n := s.Network
	for i, a := range n.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fieldError(fmt.Sprintf("network.listen[%d]", i), "%q is not a multiaddr: %v", a, err)
		}
	}
	for i, a := range n.Bootstrap {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fieldError(fmt.Sprintf("network.bootstrap[%d]", i), "%q is not a multiaddr: %v", a, err)
		}
	}
	if err := CheckRelay("network.relay", n.Relay); err != nil {
		return err
	}
	for i, a := range n.Announce {
		if err := CheckAnnounce(fmt.Sprintf("network.announce[%d]", i), a); err != nil {
			return err
		}
	}
	if n.MaxMessageBytes < 4<<10 {
		return fieldError("network.max_message_bytes", "must be >= 4096, got %d", n.MaxMessageBytes)
	}
	return nil
}

// RelayModes are the values network.relay takes (node/p2p's RelayServe,
// RelayUse, RelayAuto, RelayOff: node's tests check the two lists agree).
var RelayModes = []string{"serve", "use", "auto", "off"}

// CheckRelay checks a relay mode; field names it in the error (a config
// path or a CLI flag).
func CheckRelay(field, v string) error { return oneOf(field, v, RelayModes) }

// CheckAnnounce checks an address to announce: a multiaddr with a host
// (ip4, ip6, dns, dns4, dns6) and a TCP or UDP port, without /p2p/ (the
// node appends its own ID). field names it in the error.
func CheckAnnounce(field, a string) error {
	m, err := ma.NewMultiaddr(a)
	if err != nil {
		return fieldError(field, "%q is not a multiaddr: %v", a, err)
	}
	comps := []ma.Component(m)
	if len(comps) < 2 {
		return fieldError(field, "%q needs a host and a port, e.g. /ip4/203.0.113.7/tcp/4001 or /dns4/example.org/udp/4001/quic-v1", a)
	}
	switch comps[0].Protocol().Code {
	case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
	default:
		return fieldError(field, "%q must start with /ip4, /ip6 or /dns: it is where other peers dial", a)
	}
	if c := comps[1].Protocol().Code; c != ma.P_TCP && c != ma.P_UDP {
		return fieldError(field, "%q needs a /tcp/PORT or /udp/PORT/quic-v1 after the host", a)
	}
	for _, c := range comps {
		if c.Protocol().Code == ma.P_P2P || c.Protocol().Code == ma.P_CIRCUIT {
			return fieldError(field, "%q names a peer or a relay: announce only this node's own address (its ID is added)", a)
		}
	}
	return nil
}
