package p2p

import (
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

// ScoreParams returns gossipsub peer-score parameters that use appScore
// (verification results; nil for none) as the application-specific score.
// IP colocation is off: swarms on one machine or behind one NAT are normal.
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
