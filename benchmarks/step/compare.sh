#!/usr/bin/env bash
# compare.sh: one training step of swarmtrain (pure Go and OpenBLAS builds)
# against PyTorch (CPU, one thread), measured side by side in one run.
#
#   benchmarks/step/compare.sh              # 5 rounds of 50 steps per model
#   ROUNDS=9 STEPS=100 benchmarks/step/compare.sh
#
# Each round runs the pure Go benchmark, the OpenBLAS one (skipped where
# libopenblas-dev is missing) and benchmarks/step/torch_ref.py one after the
# other, so a busy machine slows all three alike; the tables take each
# column's best round and its median round, and the ratios divide swarmtrain's
# figure by PyTorch's (below 1: swarmtrain is faster). The first table is
# wall time per step; the second CPU time per step over all threads (the Go
# side may use every core; PyTorch is pinned to one).
#
# Needs: Go, and Debian's python3-torch (PYTHON names another interpreter).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-50}
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/step-go.test" ./benchmarks/step/
builds=(go)
if CGO_LDFLAGS=-lopenblas go test -tags openblas -c -o "$tmp/step-openblas.test" ./benchmarks/step/ 2>"$tmp/openblas.err"; then
	builds+=(openblas)
else
	echo "# OpenBLAS build skipped: $(head -1 "$tmp/openblas.err")" >&2
fi
"$PYTHON" -c 'import torch' || { echo "compare.sh: $PYTHON has no torch (apt-get install python3-torch)" >&2; exit 1; }

echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
	for b in "${builds[@]}"; do
		"$tmp/step-$b.test" -test.run '^$' -test.bench '^BenchmarkStep$' -test.benchtime "${STEPS}x" 2>/dev/null |
			awk -v b="$b" '/^BenchmarkStep\// { name = $1; sub(/^BenchmarkStep\//, "", name); sub(/-[0-9]+$/, "", name);
				for (i = 2; i < NF; i++) { if ($(i+1) == "ms/step") wall = $i; if ($(i+1) == "cpu-ms/step") cpu = $i }
				print b, name, wall, cpu }' >>"$tmp/results"
	done
	"$PYTHON" benchmarks/step/torch_ref.py --steps "$STEPS" | awk '!/^#/ { print "torch", $1, $2, $6 }' >>"$tmp/results"
	echo "# round $r/$ROUNDS done" >&2
done

# Best and median per (build, model), then the ratios to PyTorch: wall time
# first, then CPU time (all threads), which a busy machine disturbs less.
table() { # $1: column of the results (3 wall, 4 CPU), $2: title
	awk -v col="$1" -v title="$2" '
	{ v[$1 SUBSEP $2] = v[$1 SUBSEP $2] " " $col; models[$2] = 1 }
	function stat(key, which,   n, a, i, j, t) {
		n = split(v[key], a, " ")
		if (n == 0) return ""
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return which == "best" ? a[1] : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
	}
	END {
		printf "%-14s %-7s %10s %10s %10s %16s %17s\n", title, "", "pure Go", "OpenBLAS", "PyTorch", "pure Go/PyTorch", "OpenBLAS/PyTorch"
		for (m in models) for (k = 0; k < 2; k++) {
			w = k ? "median" : "best"
			g = stat("go" SUBSEP m, w); o = stat("openblas" SUBSEP m, w); t = stat("torch" SUBSEP m, w)
			printf "%-14s %-7s %10s %10s %10s %16s %17s\n", m, w, g " ms", (o == "" ? "-" : o " ms"), t " ms",
				(g == "" ? "-" : sprintf("%.2fx", g / t)), (o == "" ? "-" : sprintf("%.2fx", o / t))
		}
	}' "$tmp/results" | { read -r header; echo "$header"; sort; }
}
echo "# $ROUNDS rounds of $STEPS steps, load after: $(cut -d' ' -f1-3 /proc/loadavg)"
table 3 "wall ms/step"
table 4 "CPU ms/step"
