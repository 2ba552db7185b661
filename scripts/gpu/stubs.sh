#!/usr/bin/env bash
# stubs.sh ROOT: link stubs for libcuda, libcublas and libcudnn in ROOT/lib, made
# from the headers in ROOT/include (as unpacked by build.sh). Every function the
# headers declare becomes an empty symbol of that name, the same job as the
# toolkit's lib64/stubs: the linker only needs the names and the SONAME, and at
# run time the GPU machine's real libraries are loaded in their place
# (libcuda.so.1 from the driver, libcublas.so.N and libcudnn.so.N from the
# folders run.sh puts on LD_LIBRARY_PATH). No NVIDIA binary has to travel.
set -euo pipefail
root=${1:?usage: stubs.sh ROOT (with ROOT/include holding cuda.h, cublas_v2.h, cudnn.h)}
inc=$root/include
mkdir -p "$root/lib"

stub() { # stub LIB SONAME HEADER
  local lib=$1 soname=$2 hdr=$3
  if [ ! -e "$inc/$hdr" ]; then
    echo "stubs.sh: no $inc/$hdr: no lib$lib stub" >&2
    return
  fi
  printf '#include <%s>\n' "$hdr" | gcc -E -I"$inc" -x c - |
    grep -oE '\b(cu|cublas|cudnn)[A-Za-z0-9_]*[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | sort -u |
    sed 's/.*/void &(void) {}/' > "$root/lib/$lib.c"
  gcc -shared -fPIC -w -Wl,-soname,"$soname" -o "$root/lib/lib$lib.so" "$root/lib/$lib.c"
  echo "stubs.sh: lib$lib.so ($soname, $(wc -l < "$root/lib/$lib.c") symbols from $hdr)"
}

major() { sed -n "s/^#define $1[[:space:]][[:space:]]*\([0-9][0-9]*\).*/\1/p" "$2" 2>/dev/null | head -1; }

# The SONAMEs follow the headers' major versions; CUBLAS_SONAME / CUDNN_SONAME
# override them (headers of one version, libraries of another: README, plan B).
stub cuda libcuda.so.1 cuda.h
stub cublas "${CUBLAS_SONAME:-libcublas.so.$(major CUBLAS_VER_MAJOR "$inc/cublas_api.h")}" cublas_v2.h
stub cudnn "${CUDNN_SONAME:-libcudnn.so.$(major CUDNN_MAJOR "$inc/cudnn_version.h")}" cudnn.h
