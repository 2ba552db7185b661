#!/usr/bin/env bash
# compare.sh: one transformer training step (examples/brown-transformer.yaml's
# shape, batch 32 x 64 characters) of swarmtrain against PyTorch (CPU, one
# thread), measured side by side in one run: each round runs both, one after
# the other, so a busy machine slows both alike.
#
#   ROUNDS=5 STEPS=10 benchmarks/lm/compare.sh
#
# Prints each round's wall and CPU ms per step and tokens/s, then the
# medians and the ratios (swarmtrain / PyTorch; below 1: swarmtrain is
# cheaper). CPU time counts every thread (the Go side uses all cores), and
# a shared machine disturbs it less than wall time.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-10}
PYTHON=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/lm.test" ./benchmarks/lm/
echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
	"$tmp/lm.test" -test.run '^$' -test.bench . -test.benchtime "${STEPS}x" | awk '/^BenchmarkTransformerStep/ {
		for (i = 2; i < NF; i++) { if ($(i+1) == "ms/step") w = $i; if ($(i+1) == "cpu-ms/step") c = $i; if ($(i+1) == "tokens/s") t = $i }
		print "go", w, c, t }' | tee -a "$tmp/res"
	"$PYTHON" benchmarks/lm/torch_lm.py --steps "$STEPS" | awk '{ print "torch", $2, $6, $4 }' | tee -a "$tmp/res"
done
awk '{ w[$1] = w[$1] " " $2; c[$1] = c[$1] " " $3 }
function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
END { gw = med(w["go"]); tw = med(w["torch"]); gc = med(c["go"]); tc = med(c["torch"])
	printf "median wall ms/step: swarmtrain %s, PyTorch %s (%.2fx); CPU ms/step: swarmtrain %s, PyTorch %s (%.2fx)\n", gw, tw, gw / tw, gc, tc, gc / tc }' "$tmp/res"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
