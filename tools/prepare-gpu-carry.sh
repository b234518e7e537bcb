#!/usr/bin/env bash
# Builds what a GPU-machine session carries for the .NET side (that machine has no .NET and no package
# registry): a self-contained linux-x64 publish of the CUDA test suite and the benchmarks, in one
# folder (they share the runtime), packed as .carry/dotnet-gpu.tar.xz (git-ignored).
# Then: device run with carry [".carry/dotnet-gpu.tar.xz"] and `bash bench/run_gpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .carry/dotnet
for project in tests/Saber.Cuda.Tests src/Saber.Benchmarks; do
    dotnet publish "$project" -c Release -r linux-x64 --self-contained -o .carry/dotnet -p:GenerateDocumentationFile=false --nologo -v quiet
done
tar -C .carry -cJf .carry/dotnet-gpu.tar.xz dotnet
ls -l .carry/dotnet-gpu.tar.xz
