#!/usr/bin/env bash
# build.sh PROBE_DIR: builds, on this (CPU) machine, the binaries the GPU
# machine runs, against the headers probe.sh copied from it:
#   bin/gpu/gpu-cuda.test   benchmarks/gpu with -tags cuda (driver, cuBLAS, MLP step on the GPU)
#   bin/gpu/gpu-cpu.test    the same package without the tag (the CPU column)
#   bin/gpu/swarmtrain      the CLI with -tags cuda (BUILD_CLI=1; for `join --device cuda`)
# bin/ is ignored by git; pass carry ["bin/gpu"] to the device tool, then run
# scripts/gpu/run.sh there. PKGS adds packages (e.g. PKGS=./train once train
# takes --device cuda): each gives NAME-cuda.test and NAME-cpu.test.
#
#   scripts/gpu/build.sh /work/.device/<run>/files   # the folder the probe's files came back in
set -euo pipefail
cd "$(dirname "$0")/../.."
probe=${1:?usage: build.sh PROBE_DIR (the cuda-include.tar.gz and cudnn-include.tar.gz, or a folder with include/cuda.h and include/cudnn.h)}
root=${CUDA_ROOT:-/tmp/swarmtrain-cuda}

rm -rf "$root"
mkdir -p "$root/include"
if [ -e "$probe/cuda-include.tar.gz" ]; then
  tar -xzf "$probe/cuda-include.tar.gz" -C "$root/include"
  if [ ! -e "$probe/cudnn-include.tar.gz" ]; then
    echo "build.sh: no cudnn-include.tar.gz in $probe: gorgonia's cuda build needs cudnn.h (its root package imports cu/dnn)" >&2
    exit 1
  fi
  tar -xzf "$probe/cudnn-include.tar.gz" -C "$root/include"
elif [ -e "$probe/include/cuda.h" ] && [ -e "$probe/include/cudnn.h" ]; then
  cp -r "$probe/include/." "$root/include/" # a folder of headers at hand (README, plan B)
else
  echo "build.sh: $probe has neither probe.sh's tarballs nor include/cuda.h and include/cudnn.h" >&2
  exit 1
fi
grep -m1 '#define CUDA_VERSION' "$root/include/cuda.h"
scripts/gpu/stubs.sh "$root"

export CGO_CFLAGS="-I$root/include" CGO_LDFLAGS="-L$root/lib"
mkdir -p bin/gpu
for pkg in ./benchmarks/gpu ${PKGS:-}; do
  name=$(basename "$pkg")
  echo "build.sh: $pkg -> bin/gpu/$name-cuda.test, bin/gpu/$name-cpu.test"
  go test -c -tags cuda -ldflags='-s -w' -o "bin/gpu/$name-cuda.test" "$pkg"
  go test -c -ldflags='-s -w' -o "bin/gpu/$name-cpu.test" "$pkg"
done
if [ "${BUILD_CLI:-0}" = 1 ]; then
  go build -tags cuda -ldflags='-s -w' -o bin/gpu/swarmtrain ./cmd/swarmtrain
fi
du -sh bin/gpu/*
