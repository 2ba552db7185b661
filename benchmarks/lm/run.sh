#!/usr/bin/env bash
# run.sh: held-out bits per character on the Brown corpus after MINUTES of
# training, swarmtrain (all cores) and PyTorch (one thread) side by side in
# one run (both at once, at low priority: they share the machine alike).
#
#   MINUTES=20 benchmarks/lm/run.sh        # Brown in $SWARMTRAIN_DATA/brown or ../shared/data/brown
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-20}
DATA=${DATA:-${SWARMTRAIN_DATA:-../shared/data}/brown}
PYTHON=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-/tmp/swarmtrain-lm}
mkdir -p "$OUT"
go build -o "$OUT/swarmtrain" ./cmd/swarmtrain
echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 10 "$OUT/swarmtrain" train --config benchmarks/lm/brown-20min.yaml --dataset-dir "$DATA" \
	--time-limit "${MINUTES}m" --eval-samples 1000 --output "$OUT/brown.safetensors" >"$OUT/go.log" 2>&1 &
go_pid=$!
nice -n 10 "$PYTHON" benchmarks/lm/torch_lm.py --data "$DATA" --minutes "$MINUTES" --eval-every 200 --eval-windows 1000 >"$OUT/torch.log" 2>&1 &
torch_pid=$!
wait "$go_pid" "$torch_pid"
echo "## swarmtrain"; cat "$OUT/go.log"
echo "## PyTorch"; cat "$OUT/torch.log"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
