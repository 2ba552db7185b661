package node

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/train"
)

// ModelSpec is the train package's view of the config's model.
func ModelSpec(c *config.Swarm) train.ModelSpec { return round.ParamsOf(c).Model }

// OptimizerSpec is the train package's view of a config optimizer.
func OptimizerSpec(o config.Optimizer) train.OptimizerSpec { return round.OptimizerSpec(o) }

// putFile stores a file and announces it.
func putFile(ctx context.Context, ex *storage.Exchange, b []byte) (cid.Cid, error) {
	c, err := ex.AddFile(ctx, b)
	if err != nil {
		return cid.Undef, err
	}
	_ = ex.Provide(ctx, c) // best effort: peers also find it by asking connected peers
	return c, nil
}

// loadVector fetches a checkpoint by CID and flattens its tensors in file
// order. It reads the checkpoint into memory without storing it
// (Exchange.Load): a node needs a model it could not compute once, and
// writing it to LevelDB costs more than fetching it (benchmarks/transfer).
func loadVector(ctx context.Context, ex *storage.Exchange, c cid.Cid, want int) ([]float32, error) {
	b, err := ex.Load(ctx, c)
	if err != nil {
		return nil, err
	}
	v, err := round.VectorOf(b, want)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", c, err)
	}
	return v, nil
}
