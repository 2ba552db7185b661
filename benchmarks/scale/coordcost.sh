#!/bin/sh
# coordcost.sh PROFILE...: the coordinator's share of a benchmarks/scale
# swarm's CPU (-cpuprofile FILE writes FILE.<peers>, covering the measured
# rounds), from the goroutines labelled role=coordinator: all of it, tier 0
# (the gossip validator, every contribution message), tier 1
# (verify.CheckRound) and the seal (judge, step, persist, publish), as a
# percentage of the profile's samples. Times the benchmark's "CPU ms per
# round per peer" by (peers + 1) for the process's CPU per round; the
# shares of it are the coordinator's. Shares, not the profile's own
# seconds: sampling may miss CPU time on a loaded machine, evenly across
# goroutines. Streams the coordinator serves run on goroutines mocknet
# starts for the dialing peer, so serving checkpoints and payloads is not
# in these figures.
set -e
ms() { # ms PROFILE [FOCUS]: milliseconds of coordinator samples
	focus=
	[ -n "$2" ] && focus="-focus=$2"
	go tool pprof -tagfocus=role=coordinator $focus -nodefraction=0 -nodecount=1000000 -unit=ms -top "$1" 2>/dev/null |
		awk '/^Showing nodes accounting for/ { v = $5; sub(/ms,?$/, "", v); print v + 0; found = 1 } END { if (!found) print 0 }'
}
total() { # total PROFILE: milliseconds of all samples
	go tool pprof -unit=ms -top -nodecount=1 "$1" 2>/dev/null |
		awk '/Total samples =/ { for (i = 1; i <= NF; i++) if ($i == "=") { v = $(i+1); sub(/ms$/, "", v); print v + 0 } }'
}
echo "| profile | samples ms | coordinator % | tier 0 % | tier 1 % | seal % |"
echo "| --- | --- | --- | --- | --- | --- |"
for f in "$@"; do
	t=$(total "$f")
	awk -v f="$f" -v t="$t" -v a="$(ms "$f")" -v t0="$(ms "$f" 'roundGate..validate')" \
		-v t1="$(ms "$f" 'verify.CheckRound')" -v s="$(ms "$f" 'Coordinator..seal$')" \
		'BEGIN { printf "| %s | %d | %.2f | %.3f | %.3f | %.3f |\n", f, t, 100*a/t, 100*t0/t, 100*t1/t, 100*s/t }'
done
