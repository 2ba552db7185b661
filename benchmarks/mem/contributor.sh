#!/usr/bin/env bash
# contributor.sh: peak resident memory of a contributor (swarmtrain join) and
# its coordinator in a 3-round MNIST MLP swarm on 127.0.0.1.
#
#   benchmarks/mem/contributor.sh [BINARY]   # default: builds ./cmd/swarmtrain
#
# Compare two builds by running it with each binary (e.g. one built from
# main). Needs GNU time (/usr/bin/time) and MNIST in $SWARMTRAIN_DATA/mnist
# or ../shared/data/mnist.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$tmp/swarmtrain
	go build -o "$bin" ./cmd/swarmtrain
fi
mnist=${SWARMTRAIN_DATA:-../shared/data}/mnist
cat >"$tmp/swarm.yaml" <<YAML
name: mem
model: {kind: mlp, hidden: [256, 128]}
train: {rounds: 3, inner_steps: 20}
round: {deadline: 60s, quorum: 1, min_contributions: 1}
network: {listen: ["/ip4/127.0.0.1/tcp/0"]}
api: {listen: ""}
YAML
/usr/bin/time -f "coordinator max RSS %M KB" -o "$tmp/coord.rss" "$bin" start --config "$tmp/swarm.yaml" --data-dir "$tmp/coord" \
	--dataset-dir "$mnist" --exit-when-done >"$tmp/coord.log" 2>&1 &
for _ in $(seq 1 600); do
	line=$(grep -m1 -E 'swarmtrain join ' "$tmp/coord.log" || true)
	[ -n "$line" ] && break
	sleep 0.2
done
read -r swarm boot < <(echo "$line" | sed -E 's/.*join (\S+) --bootstrap (\S+).*/\1 \2/')
/usr/bin/time -f "contributor max RSS %M KB" -o "$tmp/join.rss" "$bin" join "$swarm" --bootstrap "$boot" \
	--data-dir "$tmp/c1" --dataset-dir "$mnist" >"$tmp/join.log" 2>&1
wait
cat "$tmp/join.rss" "$tmp/coord.rss"
