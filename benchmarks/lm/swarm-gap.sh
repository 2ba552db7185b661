#!/usr/bin/env bash
# swarm-gap.sh: held-out bits per character of a 3-worker swarm against one
# process at equal tokens (benchmarks/README.md, "Swarm against single
# process at equal tokens"), one run after the other at low priority. The
# swarm is benchmarks/sim: the contributors' round.Worker and the
# coordinator's round.Run without the network.
#
#   benchmarks/lm/swarm-gap.sh            # the reference, the chosen swarm setting, the old one, two controls
#   SWEEP=1 benchmarks/lm/swarm-gap.sh    # and every other row of the table
#
# Every run is deterministic (the same figures to the last digit on a rerun).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-${SWARMTRAIN_DATA:-../shared/data}/brown}
OUT=${OUT:-/tmp/swarmtrain-gap}
mkdir -p "$OUT"
go build -o "$OUT/swarmtrain" ./cmd/swarmtrain
go build -o "$OUT/sim" ./benchmarks/sim
echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"

single() { # name, then sed expressions turning brown-small.yaml into the run's config
	local name=$1
	shift
	sed "$@" benchmarks/lm/brown-small.yaml >"$OUT/$name.yaml"
	echo "## single process: $name"
	nice -n 10 "$OUT/swarmtrain" train --config "$OUT/$name.yaml" --dataset-dir "$DATA" --eval-samples 500
}
swarm() { # name, config, then sim flags
	local name=$1 cfg=$2
	shift 2
	echo "## swarm: $name ($cfg $*)"
	nice -n 10 "$OUT/sim" -config "$cfg" -data "$DATA" -workers 3 -eval-samples 500 -rule mean "$@"
}

# The reference: batch 32, 1,200 steps.
single batch32 -e 's/^name: .*/name: batch32/'
# The chosen swarm setting: batch 8, H = 40, outer Nesterov 0.7 / 0.8.
swarm b8-h40-m0.8 benchmarks/lm/brown-small-swarm.yaml -eval-every 10
# The setting the goal was first measured with: batch 32, H = 10, Nesterov 0.7 / 0.9.
swarm b32-h10-m0.9 benchmarks/lm/brown-small.yaml -eval-every 10
# Controls: one process at the swarm's global batch (3 x 8 = 24, 1,600
# steps) and at its per-worker batch (8, 4,800 steps), the same characters.
single batch24 -e 's/^name: .*/name: batch24/' -e 's/batch_size: 32/batch_size: 24/' -e 's/epochs: 6/epochs: 8/'
single batch8 -e 's/^name: .*/name: batch8/' -e 's/batch_size: 32/batch_size: 8/' -e 's/steps_per_epoch: 200/steps_per_epoch: 800/'

if [ "${SWEEP:-}" = 1 ]; then
	c=benchmarks/lm/brown-small.yaml
	swarm b32-h10-m0.9-outer1.0 $c -eval-every 10 -outer-lr 1.0 -outer-momentum 0.9
	swarm b32-h10-plain-average $c -eval-every 10 -outer-lr 1.0 -outer-momentum 0
	swarm b32-h10-m0.8 $c -eval-every 10 -outer-momentum 0.8
	swarm b32-h10-m0.5 $c -eval-every 10 -outer-momentum 0.5
	swarm b32-h10-inner4e-3 $c -eval-every 10 -lr 4e-3
	swarm b32-h5 $c -eval-every 20 -h 5 -rounds 80
	swarm b16-h20 $c -eval-every 10 -batch 16 -h 20
	swarm b8-h40-m0.9 $c -eval-every 10 -batch 8 -h 40
	swarm b8-h40-m0.7 $c -eval-every 10 -batch 8 -h 40 -outer-momentum 0.7
	swarm b8-h40-m0.8-topk benchmarks/lm/brown-small-swarm.yaml -eval-every 10 -codec topk+int8 -density 0.1 -ef on
	swarm b8-h40-m0.8-seed2 benchmarks/lm/brown-small-swarm.yaml -eval-every 10 -seed 2
	single batch32-seed2 -e 's/^name: .*/name: batch32-seed2/' -e 's/^seed: 1/seed: 2/'
	swarm b8-h40-plain-average $c -eval-every 10 -batch 8 -h 40 -outer-lr 1.0 -outer-momentum 0
fi
