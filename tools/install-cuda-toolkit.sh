#!/usr/bin/env bash
# Installs Debian's CUDA toolkit (nvidia-cuda-toolkit, CUDA 11.8 on bookworm) and clang-14, its host
# compiler here (nvcc 11.8 rejects g++ 12). The toolkit lives in Debian's non-free component: this
# adds that component (and contrib, which holds nvidia-support, a dependency of libcuda1) to a copy
# of the machine's existing Debian sources entry (no host name is
# written; the copy keeps whatever mirror the machine already uses). Idempotent.
set -euo pipefail

if command -v nvcc >/dev/null && command -v clang++-14 >/dev/null; then
    echo "install-cuda-toolkit: $(nvcc --version | tail -n 1); clang++-14 present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

deb822=/etc/apt/sources.list.d/debian.sources
copy=/etc/apt/sources.list.d/saber-non-free.sources
if [ ! -e "$copy" ] && [ ! -e "${copy%.sources}.list" ]; then
    if [ -f "$deb822" ]; then
        # The first stanza (the main archive, not -security), with its components set to contrib non-free.
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             NR == 1 { out = $0; gsub(/Components:[^\n]*/, "Components: contrib non-free", out); print out; exit }' "$deb822" \
            | $SUDO tee "$copy" >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
        grep -E '^deb [^#]*debian ' /etc/apt/sources.list | grep -v -- '-security' | head -n 1 \
            | sed -E 's/^(deb( \[[^]]*\])? [^ ]+ [^ ]+) .*/\1 contrib non-free/' \
            | $SUDO tee "${copy%.sources}.list" >/dev/null
    else
        echo "install-cuda-toolkit: no Debian sources entry found to copy" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends nvidia-cuda-toolkit clang-14
echo "install-cuda-toolkit: $(nvcc --version | tail -n 1)"
