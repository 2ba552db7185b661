#!/usr/bin/env bash
# run.sh [BUDGET_S]: runs ON the GPU machine, from the repo root, the binaries
# build.sh made here (device tool: carry ["bin/gpu"]), all within BUDGET_S
# seconds (default 240; the session's whole device time is 15 minutes,
# machine start included). Each step gets what is left of the budget, so a
# hang costs the budget, not the call. Logs come back in $OUT (6 files at most).
#
#   device tool run: command "scripts/gpu/run.sh 240", carry ["bin/gpu"], timeout_s 300
set -uo pipefail
: "${OUT:?set OUT to the folder to write into}"
budget=${1:-240}
start=$SECONDS

# The real libcublas.so.N and libcudnn.so.N (the binaries were linked against
# stubs with those SONAMEs): in the CUDA toolkit or in python's nvidia-* wheels.
libdirs=$(find / \( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o \
  \( -name 'libcublas.so.[0-9]*' -o -name 'libcublasLt.so.[0-9]*' -o -name 'libcudnn.so.[0-9]*' \) -print 2>/dev/null |
  xargs -r -n1 dirname | sort -u | paste -sd: -)
export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

{
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader
  nproc
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  for b in bin/gpu/*-cuda.test; do echo "$b:"; ldd "$b" | grep -E 'cuda|cublas|cudnn'; done
} 2>&1 | tee "$OUT/env.txt"

# step LOG BINARY ARGS...: runs BINARY within what is left of the budget.
step() {
  local log=$1 bin=$2
  shift 2
  local left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 10 ]; then
    echo "run.sh: budget spent (${budget}s): skipping $bin $*" | tee -a "$OUT/$log"
    return
  fi
  echo "== $bin $* (at most ${left}s)" | tee -a "$OUT/$log"
  timeout --kill-after=5 "$left" "$bin" "$@" 2>&1 | tee -a "$OUT/$log"
  echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start))s" | tee -a "$OUT/$log"
}

# Correctness first (driver, patched calls, cuBLAS, MLP step against the
# reference, 200 SGD steps), then the side-by-side timing: GPU binary, then
# the same benchmark without CUDA on this machine's CPUs.
step gpu-tests.log bin/gpu/gpu-cuda.test -test.v -test.count=1
step gpu-tests.log bin/gpu/gpu-cpu.test -test.v -test.count=1 -test.run MLP
step bench.log bin/gpu/gpu-cuda.test -test.run '^$' -test.bench MLPStep -test.benchtime 50x -test.count 3
step bench.log bin/gpu/gpu-cpu.test -test.run '^$' -test.bench MLPStep -test.benchtime 10x -test.count 3
for b in bin/gpu/*-cuda.test; do # packages added with build.sh's PKGS
  case $b in bin/gpu/gpu-cuda.test) continue ;; esac
  step more.log "$b" -test.v -test.count=1 -test.run "${RUN:-CUDA}"
done
echo "run.sh: done in $((SECONDS - start))s"
