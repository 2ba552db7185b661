package p2p

import (
	"errors"
	"fmt"
	"math"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Score thresholds. They satisfy pubsub's invariants (score_params.go):
// 0 >= gossip >= publish >= graylist, accept-PX >= 0, opportunistic graft
// >= 0. A peer the verifier proves faulty gets an application score of
// about -100 per fault (see ScoreParams), so one proven fault stops our
// gossip to it, two stop our publishing to it, three graylist it.
const (
	gossipThreshold             = -100
	publishThreshold            = -200
	graylistThreshold           = -300
	acceptPXThreshold           = 10
	opportunisticGraftThreshold = 5
)

// Topic score parameters (P1–P4 of the gossipsub v1.1 score, per topic).
//
// Invariants (checked by validateScoreParams):
//
//  1. No topic score is ever positive: time in mesh (P1) and first
//     deliveries (P2) are off. A peer cannot bank score against the
//     penalty of a proven fault, so one fault — which the application
//     score makes worth more than the gossip threshold — always crosses it,
//     however long the peer has behaved. (It also keeps accept-PX and
//     opportunistic grafting off, as they were before topic scores.)
//  2. Mesh delivery rate (P3, P3b) is off: contributions come once a round
//     per peer, in bursts; a rate threshold would count a slow or quiet
//     honest peer as failing.
//  3. Invalid messages (P4) cost their deliverer weight × count², so junk
//     costs its sender: invalidToGossipCut messages put it below the
//     gossip threshold, invalidToGraylist below the graylist, where its
//     messages are no longer even read. Tier 0 rejects only what is
//     provably invalid wherever it is checked, and ignores (no penalty)
//     what depends on the round's view, so an honest relay never pays.
//  4. The count decays to nothing over invalidMemory: a peer that stops
//     sending junk comes back, a flood is remembered for that long.
const (
	topicWeight          = 1
	invalidMessageWeight = -20
	invalidMemory        = 30 * time.Minute
	invalidToGossipCut   = 3 // 20 × 3² = 180 > 100
	invalidToGraylist    = 4 // 20 × 4² = 320 > 300
)

// ScoreParams returns gossipsub peer-score parameters that use appScore
// (verification results; nil for none) as the application-specific score.
// IP colocation is off: swarms on one machine or behind one NAT are normal.
// Each swarm topic gets TopicScoreParams when joined (Node.JoinTopic).
func ScoreParams(appScore func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	if appScore == nil {
		appScore = func(peer.ID) float64 { return 0 }
	}
	params := &pubsub.PeerScoreParams{
		Topics:                   map[string]*pubsub.TopicScoreParams{},
		AppSpecificScore:         appScore,
		AppSpecificWeight:        1,
		IPColocationFactorWeight: 0,
		// Broken promises (IWANT not answered) cost a little and fade.
		BehaviourPenaltyWeight:    -1,
		BehaviourPenaltyThreshold: 1,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             time.Second,
		DecayToZero:               0.01,
		RetainScore:               10 * time.Minute,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             gossipThreshold,
		PublishThreshold:            publishThreshold,
		GraylistThreshold:           graylistThreshold,
		AcceptPXThreshold:           acceptPXThreshold,
		OpportunisticGraftThreshold: opportunisticGraftThreshold,
	}
	return params, thresholds
}

// TopicScoreParams are the score parameters of every swarm topic; see the
// invariants above.
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight: topicWeight,
		// P1 off (weight 0); pubsub's atomic validation still wants a quantum.
		TimeInMeshQuantum: time.Second,
		// P4: junk costs its deliverer.
		InvalidMessageDeliveriesWeight: invalidMessageWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(invalidMemory),
	}
}

// validateScoreParams checks the invariants above and pubsub's own
// ordering of thresholds; pubsub validates the rest when the parameters
// are installed.
func validateScoreParams(p *pubsub.PeerScoreParams, tp *pubsub.TopicScoreParams, th *pubsub.PeerScoreThresholds) error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(th.GossipThreshold <= 0 && th.PublishThreshold <= th.GossipThreshold && th.GraylistThreshold <= th.PublishThreshold,
		"thresholds must satisfy 0 >= gossip >= publish >= graylist: %v, %v, %v", th.GossipThreshold, th.PublishThreshold, th.GraylistThreshold)
	check(th.AcceptPXThreshold >= 0 && th.OpportunisticGraftThreshold >= 0, "accept-PX and opportunistic-graft thresholds must be >= 0")
	check(tp.TopicWeight > 0, "topic weight %v: must be positive, or invalid messages cost nothing", tp.TopicWeight)
	check(tp.TimeInMeshWeight == 0 && tp.FirstMessageDeliveriesWeight == 0,
		"time in mesh and first deliveries must be off: a positive topic score offsets a proven fault (invariant 1)")
	check(tp.MeshMessageDeliveriesWeight == 0 && tp.MeshFailurePenaltyWeight == 0,
		"mesh delivery rate must be off: it penalises quiet honest peers (invariant 2)")
	check(tp.InvalidMessageDeliveriesWeight < 0, "invalid message weight %v: must be negative (invariant 3)", tp.InvalidMessageDeliveriesWeight)
	check(tp.InvalidMessageDeliveriesDecay > 0 && tp.InvalidMessageDeliveriesDecay < 1, "invalid message decay %v: must be in (0, 1) (invariant 4)", tp.InvalidMessageDeliveriesDecay)
	junk := func(n int) float64 { return tp.TopicWeight * tp.InvalidMessageDeliveriesWeight * float64(n*n) }
	check(junk(invalidToGossipCut) < th.GossipThreshold && junk(invalidToGossipCut-1) >= th.GossipThreshold,
		"%d invalid messages must be the first to cross the gossip threshold %v (invariant 3): they score %v", invalidToGossipCut, th.GossipThreshold, junk(invalidToGossipCut))
	check(junk(invalidToGraylist) < th.GraylistThreshold,
		"%d invalid messages must cross the graylist threshold %v (invariant 3): they score %v", invalidToGraylist, th.GraylistThreshold, junk(invalidToGraylist))
	check(p.AppSpecificWeight > 0, "the application score must count")
	check(p.IPColocationFactorWeight == 0, "IP colocation must be off: swarms on one host or behind one NAT are normal")
	check(!math.IsNaN(p.DecayToZero) && p.DecayToZero > 0 && p.DecayToZero < 1, "decay-to-zero %v must be in (0, 1)", p.DecayToZero)
	return errors.Join(errs...)
}
