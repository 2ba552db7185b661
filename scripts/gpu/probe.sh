#!/usr/bin/env bash
# probe.sh: runs ON the GPU machine (through the device tool, from the repo
# root; $OUT is the folder whose files come back). It says what is there
# (GPU, driver, nvcc, where cuBLAS and cuDNN live) and packs the headers that
# `go build -tags cuda` needs, so scripts/gpu/build.sh can build the test
# binaries on the CPU machine (the GPU machine has no Go toolchain).
#
# Writes at most 4 files (the device tool brings back 8, 16 MiB each):
#   $OUT/probe.txt             the report
#   $OUT/cuda-include.tar.gz   CUDA's include dir, C headers only (top level *.h, *.hpp, crt/)
#   $OUT/cudnn-include.tar.gz  cuDNN's headers
#   $OUT/libdirs.txt           the folders holding libcublas.so.N and libcudnn.so.N (run.sh finds them again)
# Nothing NVIDIA ships goes into the repository: build.sh unpacks these in /tmp.
set -uo pipefail
: "${OUT:?set OUT to the folder to write into}"

section() { printf '\n== %s ==\n' "$*"; }

probe() {

section GPU
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,memory.used --format=csv 2>&1
nvidia-smi -L 2>&1

section nvcc
command -v nvcc && nvcc --version | tail -2

cuda_home=""
for d in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" /usr/local/cuda-*; do
  if [ -n "$d" ] && [ -e "$d/include/cuda.h" ]; then cuda_home=$d; break; fi
done
section "CUDA toolkit: ${cuda_home:-not found}"
if [ -n "$cuda_home" ]; then
  grep -m1 '#define CUDA_VERSION' "$cuda_home/include/cuda.h"
  grep -h '#define CUBLAS_VER_\(MAJOR\|MINOR\)' "$cuda_home/include/cublas_api.h" 2>/dev/null
  ls "$cuda_home/lib64/stubs" 2>/dev/null | tr '\n' ' '; echo
  (cd "$cuda_home/include" && tar -czf "$OUT/cuda-include.tar.gz" --dereference ./*.h ./*.hpp crt 2>/dev/null)
  ls -la "$OUT/cuda-include.tar.gz"
fi

section "libraries (libcuda, libcublas, libcudnn) and headers (cublas_api.h, cudnn_version.h)"
# Every filesystem (python's wheels may sit on another mount than /), less the
# kernel's.
found=$(find / \( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o \
  \( -name 'libcuda.so*' -o -name 'libcublas.so*' -o -name 'libcublasLt.so*' -o -name 'libcudnn.so*' \
     -o -name 'cudnn_version.h' -o -name 'cublas_api.h' \) -print 2>/dev/null | sort)
echo "$found"

cudnn_h=$(echo "$found" | grep '/cudnn_version.h$' | head -1)
if [ -n "$cudnn_h" ]; then
  inc=$(dirname "$cudnn_h")
  section "cuDNN headers: $inc"
  grep -h '#define CUDNN_\(MAJOR\|MINOR\|PATCHLEVEL\) ' "$cudnn_h"
  (cd "$inc" && tar -czf "$OUT/cudnn-include.tar.gz" --dereference cudnn*.h)
  ls -la "$OUT/cudnn-include.tar.gz"
else
  section "cuDNN headers: not found"
fi

echo "$found" | grep -E '/lib(cublas|cublasLt|cudnn)\.so\.[0-9]+$' | xargs -r -n1 dirname | sort -u > "$OUT/libdirs.txt"
section "library folders for LD_LIBRARY_PATH"
cat "$OUT/libdirs.txt"

section "python's view (torch)"
python3 - <<'PY' 2>&1
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
except Exception as e:
    print("torch not usable:", e)
PY
python3 -m pip list 2>/dev/null | grep -i '^nvidia-' || true
}

probe 2>&1 | tee "$OUT/probe.txt"
