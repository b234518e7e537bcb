#!/usr/bin/env bash
# Builds what a GPU-machine session carries for the .NET side (that machine has no .NET and no package
# registry): a self-contained linux-x64 publish of the CUDA test suite, the fixture writer (saber-fixture),
# the CLI (saber, for import) and the benchmarks, in one folder (they share the runtime). The CLI and the
# benchmarks are published with ONNX Runtime's GPU build (-p:SaberOnnxRuntime=gpu, docs/gpu.md).
# One device call carries at most 64 MiB and ONNX Runtime's GPU libraries are ~330 MB, so they are packed
# apart and split (all git-ignored):
#   .carry/ort-gpu.part-aa, -ab, ...  ONNX Runtime's native libraries (.tar.xz split in 56 MiB parts)
#   .carry/dotnet-gpu.tar.xz          everything else, with dotnet/ort-gpu.parts.sha256 listing the parts
# Then device calls, one after another while the machine stays warm: each part alone (carry
# [".carry/ort-gpu.part-aa"], command `true`; then -ab, ...), and last carry [".carry/dotnet-gpu.tar.xz"]
# with `bash bench/run_gpu.sh` (its header says more).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .carry/dotnet .carry/ort-gpu .carry/ort-gpu.part-* .carry/ort-gpu.tar.xz .carry/dotnet-gpu.tar.xz
mkdir -p .carry
publish() {
    dotnet publish "$1" -c Release -r linux-x64 --self-contained -o .carry/dotnet -p:GenerateDocumentationFile=false --nologo -v quiet "${@:2}"
}
publish tests/Saber.Cuda.Tests
publish tests/Saber.Checkpoints.Fixtures
# ONNX Runtime's GPU build last, so that no CPU build of libonnxruntime.so is left in the shared folder.
publish src/Saber.Cli -p:SaberOnnxRuntime=gpu
publish src/Saber.Benchmarks -p:SaberOnnxRuntime=gpu

# ONNX Runtime's natives apart, in parts under one call's carry limit.
mkdir -p .carry/ort-gpu/dotnet
mv .carry/dotnet/libonnxruntime*.so .carry/ort-gpu/dotnet/
[ -f .carry/ort-gpu/dotnet/libonnxruntime_providers_cuda.so ] ||
    { echo "prepare-gpu-carry: no libonnxruntime_providers_cuda.so in the publish (not the GPU build?)" >&2; exit 1; }
tar -C .carry/ort-gpu -cf - dotnet | xz -T0 -6 > .carry/ort-gpu.tar.xz
split -b 56m .carry/ort-gpu.tar.xz .carry/ort-gpu.part-
rm -rf .carry/ort-gpu .carry/ort-gpu.tar.xz
(cd .carry && sha256sum ort-gpu.part-*) > .carry/dotnet/ort-gpu.parts.sha256

tar -C .carry -cf - dotnet | xz -T0 -6 > .carry/dotnet-gpu.tar.xz
ls -l .carry/dotnet-gpu.tar.xz .carry/ort-gpu.part-*
limit=$((64 * 1024 * 1024))
for file in .carry/dotnet-gpu.tar.xz .carry/ort-gpu.part-*; do
    size=$(stat -c %s "$file")
    [ "$size" -lt "$limit" ] || echo "prepare-gpu-carry: $file is $size bytes, over one call's 64 MiB carry" >&2
done
