#!/usr/bin/env bash
# local-toolkit.sh [DIR]: Debian's CUDA 11.8 headers, link stubs and nvcc in DIR
# (default /tmp/cuda-debian), unpacked from the non-free packages without
# installing them (the packages' libraries are 3 GB installed; this keeps ~0.3 GB).
# For two jobs on a machine with no GPU:
#   - compile-check gorgonia.org/cu (third_party/gorgonia-cu) against real CUDA
#     11 headers: CGO_CFLAGS=-I$DIR/include CGO_LDFLAGS=-L$DIR/lib64/stubs \
#       go build gorgonia.org/cu gorgonia.org/cu/blas
#     (Debian has no cuDNN headers, so not gorgonia's -tags cuda build: that
#     needs the GPU machine's headers, scripts/gpu/build.sh.)
#   - regenerate internal/cudakernels with an nvcc:
#     NVCC=$DIR/bin/nvcc scripts/gpu/cudamodules.sh
# Needs root for apt-get (non-free is added to the sources if missing).
set -euo pipefail
dir=${1:-/tmp/cuda-debian}
pkgs=(nvidia-cuda-dev nvidia-cuda-toolkit libnvvm4)

if ! apt-cache show nvidia-cuda-dev >/dev/null 2>&1; then
  . /etc/os-release
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$VERSION_CODENAME" "$VERSION_CODENAME" > /etc/apt/sources.list.d/debian-nonfree.sources
  apt-get update -qq
fi
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
(cd "$dl" && apt-get download "${pkgs[@]}" >/dev/null 2>&1)
rm -rf "$dir"
mkdir -p "$dir/x" "$dir/lib64"
for deb in "$dl"/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir/x" --wildcards \
    './usr/include/*' './usr/lib/x86_64-linux-gnu/stubs/*' './usr/lib/x86_64-linux-gnu/libnvvm*' \
    './usr/lib/nvidia-cuda-toolkit/*' './usr/bin/ptxas' './usr/bin/fatbinary' './usr/bin/cudafe++' 2>/dev/null || true
done
mv "$dir/x/usr/include" "$dir/include"
mv "$dir/x/usr/lib/x86_64-linux-gnu/stubs" "$dir/lib64/stubs"
mv "$dir/x/usr/lib/x86_64-linux-gnu"/libnvvm* "$dir/lib64/"
mv "$dir/x/usr/lib/nvidia-cuda-toolkit" "$dir/toolkit"
mkdir -p "$dir/bin"
mv "$dir/x/usr/bin"/* "$dir/toolkit/bin/"
rm -rf "$dir/x"

# nvcc reads nvcc.profile beside itself (Debian's points at /etc); ours points
# into DIR. gcc 12 is newer than CUDA 11.8 knows, hence -allow-unsupported-compiler
# (fine for -ptx, the only use here).
rm -f "$dir/toolkit/bin/nvcc.profile"
cat > "$dir/toolkit/bin/nvcc.profile" <<PROFILE
NVVMIR_LIBRARY_DIR = $dir/toolkit/libdevice
PATH += $dir/toolkit/bin:
INCLUDES += "-I$dir/include" \$(_SPACE_)
LIBRARIES =+ \$(_SPACE_) -L$dir/lib64/stubs
PROFILE
cat > "$dir/bin/nvcc" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH=$dir/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec $dir/toolkit/bin/nvcc -ccbin "\${CCBIN:-\$(command -v g++)}" -allow-unsupported-compiler "\$@"
WRAP
chmod +x "$dir/bin/nvcc"
"$dir/bin/nvcc" --version | tail -1
grep -m1 '#define CUDA_VERSION' "$dir/include/cuda.h"
du -sh "$dir"
