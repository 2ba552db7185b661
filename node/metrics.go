package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// metrics are a coordinator's Prometheus series, on a registry of its own
// (no process-global state): /metrics serves them.
type metrics struct {
	reg      *prometheus.Registry
	sealed   prometheus.Counter
	accepted prometheus.Counter
	rejected *prometheus.CounterVec
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	sealTime prometheus.Histogram
	accuracy prometheus.Gauge
	// tier2Seconds is tier 2's cost per sampled contribution.
	tier2Seconds prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		sealed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmtrain_rounds_sealed_total", Help: "Rounds sealed."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmtrain_contributions_accepted_total", Help: "Contributions accepted."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarmtrain_contributions_rejected_total", Help: "Contributions rejected, by reason."}, []string{"reason"}),
		bytesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmtrain_bytes_in_total", Help: "Contribution bytes received."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "swarmtrain_bytes_out_total", Help: "Contribution bytes sent."}),
		sealTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "swarmtrain_round_seal_seconds", Help: "Time to seal a round once collection ends.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		accuracy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "swarmtrain_test_accuracy", Help: "Test accuracy after the last sealed round."}),
		tier2Seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "swarmtrain_tier2_seconds_per_check", Help: "Tier-2 time per sampled contribution.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	m.reg.MustRegister(m.sealed, m.accepted, m.rejected, m.bytesIn, m.bytesOut, m.sealTime, m.accuracy, m.tier2Seconds)
	return m
}

func (m *metrics) roundSealed(s RoundSummary) {
	m.sealed.Inc()
	m.sealTime.Observe(s.SealTime.Seconds())
	m.accuracy.Set(s.TestAccuracy)
}

// restore counts a round sealed before a restart, so the counters go on
// from the ledger instead of starting again at 0.
func (m *metrics) restore(rec *record.RoundRecord) {
	m.sealed.Inc()
	for _, e := range rec.Entries {
		if e.Verdict == record.VerdictAccepted {
			m.accepted.Inc()
		} else {
			m.rejected.WithLabelValues(verify.Kind(e.Reason)).Inc()
		}
	}
}
