#!/bin/sh
# coordcost.sh ROUNDS PROFILE...: the coordinator's CPU per round in
# benchmarks/scale profiles (-cpuprofile FILE writes FILE.<peers>, covering
# rounds 2..ROUNDS-1, i.e. ROUNDS-2 rounds), from the goroutines labelled
# role=coordinator: all of it, tier 0 (the gossip validator, every
# contribution message), tier 1 (verify.CheckRound) and the seal (judge,
# step, persist, publish). Streams the coordinator serves run on goroutines
# mocknet starts for the dialing peer, so serving checkpoints and payloads
# is not in these figures.
set -e
rounds=$(( $1 - 2 ))
shift
ms() { # ms PROFILE [FOCUS]: milliseconds of coordinator samples
	focus=
	[ -n "$2" ] && focus="-focus=$2"
	go tool pprof -tagfocus=role=coordinator $focus -nodefraction=0 -nodecount=1000000 -unit=ms -top "$1" 2>/dev/null |
		awk '/^Showing nodes accounting for/ { v = $5; sub(/ms,?$/, "", v); print v + 0; found = 1 } END { if (!found) print 0 }'
}
echo "| profile | coordinator CPU ms per round | tier 0 | tier 1 | seal |"
echo "| --- | --- | --- | --- | --- |"
for f in "$@"; do
	all=$(ms "$f")
	t0=$(ms "$f" 'roundGate..validate')
	t1=$(ms "$f" 'verify.CheckRound')
	seal=$(ms "$f" 'Coordinator..seal$')
	awk -v f="$f" -v r="$rounds" -v a="$all" -v t0="$t0" -v t1="$t1" -v s="$seal" \
		'BEGIN { printf "| %s | %.1f | %.1f | %.1f | %.1f |\n", f, a/r, t0/r, t1/r, s/r }'
done
