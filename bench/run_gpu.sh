#!/usr/bin/env bash
# On the GPU machine (device tool): build with its nvcc, run the native tests, compute-sanitizer
# memcheck and racecheck on the device tests, saber_bench and the PyTorch rendering in one session;
# then, when .carry/dotnet-gpu.tar.xz was carried (tools/prepare-gpu-carry.sh), the .NET GPU-vs-CPU
# suite and the managed per-step overhead against the library built here.
# Everything it prints goes to $OUT (or ./gpu-run) for bench/results/kernels-YYYY-MM-DD.md and
# bench/results/gpu-parity-YYYY-MM-DD.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-run}
mkdir -p "$out"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    nvcc --version | tail -n 2
} > "$out/machine.txt" 2>&1
cmake -S . -B build/gpu -G Ninja -DSABER_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$out/configure.txt" 2>&1 &&
    cmake --build build/gpu > "$out/build.txt" 2>&1 || { echo "build failed"; tail -n 40 "$out/build.txt"; exit 1; }
ctest --test-dir build/gpu --output-on-failure > "$out/ctest.txt" 2>&1; echo "ctest exit $?"
for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 build/gpu/native/saber_device_tests > "$out/sanitizer-$tool.txt" 2>&1
    echo "compute-sanitizer $tool exit $?"
done
build/gpu/native/saber_bench ${BENCH_ARGS:-} > "$out/saber_bench.md" 2>&1; echo "saber_bench exit $?"
python3 bench/torch_reference.py ${BENCH_ARGS:-} --json "$out/torch.json" > "$out/torch_reference.md" 2>&1; echo "torch_reference exit $?"
if [ -f .carry/dotnet-gpu.tar.xz ]; then
    mkdir -p /tmp/saber-dotnet && tar -C /tmp/saber-dotnet -xJf .carry/dotnet-gpu.tar.xz
    export SABER_NATIVE_LIBRARY=$PWD/build/gpu/native/libsaber_native.so
    /tmp/saber-dotnet/dotnet/Saber.Cuda.Tests --output detailed --no-ansi --no-progress > "$out/dotnet-cuda-tests.txt" 2>&1
    echo "Saber.Cuda.Tests exit $?"
    /tmp/saber-dotnet/dotnet/Saber.Benchmarks gpu-overhead > "$out/gpu-overhead.md" 2>&1; echo "gpu-overhead exit $?"
    tail -n 6 "$out/dotnet-cuda-tests.txt"
fi
tail -n 5 "$out"/ctest.txt
