#!/usr/bin/env bash
# Packs every package of the repository into one folder (default artifacts/packages):
#   Saber.Native.Core, .Onnx, .Service, .Extensions.AI, .Server, .Bindings, .Cuda, .Onnx.Gpu (managed, each with a .snupkg
#   of its symbols; .Onnx.Gpu brings ONNX Runtime's GPU build in place of .Onnx's CPU one, docs/gpu.md),
#   Saber.Native.Runtime.linux-x64 (runtimes/linux-x64/native/libsaber_native.so) and Saber.Native.Cli (the saber tool).
# The native library is built first with CUDA (-DSABER_CUDA=ON, static CUDA runtime: the .so needs only the driver)
# into build/cuda, unless --native-library gives one or --no-native skips the runtime package.
#
#   bash tools/pack.sh [--output DIR] [--version V] [--native-library PATH | --no-native] [--artifacts-path DIR]
#
# --artifacts-path puts the .NET build outputs (bin/obj) there instead of the projects' folders (the packaging test
# packs into a temporary folder this way). Extra arguments after -- go to every dotnet pack.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
output="$root/artifacts/packages"
version=""
native=""
no_native=0
artifacts=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --output) output="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        --native-library) native="$2"; shift 2 ;;
        --no-native) no_native=1; shift ;;
        --artifacts-path) artifacts="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "tools/pack.sh: unknown argument $1 (see the comment at the top of the script)" >&2; exit 2 ;;
    esac
done
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ "$no_native" -eq 0 ] && [ -z "$native" ]; then
    echo "== native library (SABER_CUDA=ON, static CUDA runtime) -> build/cuda"
    cmake -S "$root" -B "$root/build/cuda" -DSABER_CUDA=ON -DSABER_CUDA_RUNTIME=Static -DCMAKE_BUILD_TYPE=Release
    cmake --build "$root/build/cuda" --parallel "$(nproc)" --target saber_native
    native="$root/build/cuda/native/libsaber_native.so"
fi
if [ -n "$native" ]; then
    native="$(cd "$(dirname "$native")" && pwd)/$(basename "$native")"
    [ -f "$native" ] || { echo "tools/pack.sh: $native does not exist" >&2; exit 1; }
    # The package promises a CUDA build (device code in .nv_fatbin) that needs only the driver (no libcudart.so).
    # Outputs captured first: under pipefail, grep -q closing a pipe early would fail the check.
    sections=$(readelf -S -W "$native")
    libraries=$(ldd "$native" || true)
    if ! grep -q '\.nv_fatbin' <<<"$sections"; then
        echo "tools/pack.sh: $native holds no CUDA device code (a host-only build?); build it with -DSABER_CUDA=ON" >&2
        exit 1
    fi
    if grep -q 'libcudart\.so' <<<"$libraries"; then
        echo "tools/pack.sh: $native links libcudart.so; build it with -DSABER_CUDA_RUNTIME=Static" >&2
        exit 1
    fi
fi

mkdir -p "$output"
output="$(cd "$output" && pwd)"
common=(-c Release -o "$output" -p:ContinuousIntegrationBuild=true)
[ -n "$version" ] && common+=(-p:Version="$version")
[ -n "$artifacts" ] && common+=(--artifacts-path "$artifacts")
common+=("${extra[@]}")

projects=(src/Saber src/Saber.Onnx src/Saber.Service src/Saber.Extensions.AI src/Saber.Server bindings/Saber.Native.Bindings src/Saber.Cuda src/Saber.Onnx.Gpu src/Saber.Cli)
if [ -n "$native" ]; then
    echo "== Saber.Native.Runtime.linux-x64 <- $native"
    dotnet pack "$root/src/Saber.Native.Runtime" "${common[@]}" -p:SaberNativeLibrary="$native"
else
    echo "== Saber.Native.Runtime.linux-x64: skipped (--no-native); Saber.Native.Cuda will not restore without it"
fi
for p in "${projects[@]}"; do
    echo "== $p"
    dotnet pack "$root/$p" "${common[@]}"
done
echo "== packages in $output"
ls -1 "$output"
