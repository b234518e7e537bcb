#!/usr/bin/env bash
# On the GPU machine (device tool): build with its nvcc, run the native tests, compute-sanitizer
# memcheck and racecheck on the device tests, saber_bench and the PyTorch rendering in one session;
# then, when .carry/dotnet-gpu.tar.xz was carried (tools/prepare-gpu-carry.sh), the .NET GPU-vs-CPU
# suite and the managed per-step overhead against the library built here; and, when ONNX Runtime's GPU
# libraries were carried too, the GPU engine's checks (gpu-forward): an imported synthetic LLaDA fixture
# through onnx-cuda against the CPU engine (logits within 1e-3), CudaSampler on the device logits against
# CpuSampler on the same logits copied back (bit for bit), and one step's time split into forward, step
# kernels and managed overhead.
# Everything it prints goes to $OUT (or ./gpu-run) for bench/results/kernels-YYYY-MM-DD.md,
# bench/results/gpu-parity-YYYY-MM-DD.md and bench/results/gpu-forward-YYYY-MM-DD.md.
#
# Carrying the .NET side (one device call carries at most 64 MiB, ONNX Runtime's GPU libraries are ~330 MB):
#   1. here: bash tools/prepare-gpu-carry.sh  (prints each file and its size)
#   2. device calls, one after another while the machine stays warm (ignored files already there are kept
#      between calls): carry [".carry/ort-gpu.part-aa"] with command `true`, then ".carry/ort-gpu.part-ab", ...
#      (one part per call), and last carry [".carry/dotnet-gpu.tar.xz"] with `bash bench/run_gpu.sh`.
#      A call carries only what it names and keeps the rest, so the parts must not be named again.
#   Without every part (checked against the list inside dotnet-gpu.tar.xz) the GPU engine check is skipped
#   with the reason; the rest runs.
#
# bash bench/run_gpu.sh --dry-run: no GPU, no nvcc; with the .NET SDK, writes the LLaDA fixture, imports it
# and runs gpu-forward --dry-run (the device engine's binding code on the CPU provider against the CPU
# engine), writing $OUT/gpu-forward-dry-run.md; exits with its status (CI runs it so that this cannot rot).
set -uo pipefail
cd "$(dirname "$0")/.."
dry_run=0
case "${1:-}" in
    --dry-run) dry_run=1 ;;
    "") ;;
    *) echo "usage: bash bench/run_gpu.sh [--dry-run]" >&2; exit 2 ;;
esac
out=${OUT:-gpu-run}
mkdir -p "$out"

if [ "$dry_run" -eq 1 ]; then
    command -v dotnet >/dev/null || { echo "run_gpu.sh --dry-run: the .NET SDK is required (dotnet not on PATH)" >&2; exit 1; }
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    dotnet run --project tests/Saber.Checkpoints.Fixtures -c Release -- write --family llada --out "$tmp/ckpt" > "$out/fixture.txt" 2>&1 ||
        { echo "fixture write failed"; tail -n 20 "$out/fixture.txt"; exit 1; }
    dotnet run --project src/Saber.Cli -c Release -- import "$tmp/ckpt" "$tmp/model" > "$out/import.txt" 2>&1 ||
        { echo "import failed"; tail -n 20 "$out/import.txt"; exit 1; }
    dotnet run --project src/Saber.Benchmarks -c Release -- gpu-forward --model "$tmp/model" --dry-run --out "$out/gpu-forward-dry-run.md"
    status=$?
    echo "gpu-forward --dry-run exit $status ($out/gpu-forward-dry-run.md)"
    exit "$status"
fi

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
    dotnet_dir=/tmp/saber-dotnet/dotnet
    rm -rf /tmp/saber-dotnet && mkdir -p /tmp/saber-dotnet && tar -C /tmp/saber-dotnet -xJf .carry/dotnet-gpu.tar.xz
    export SABER_NATIVE_LIBRARY=$PWD/build/gpu/native/libsaber_native.so
    "$dotnet_dir/Saber.Cuda.Tests" --output detailed --no-ansi --no-progress > "$out/dotnet-cuda-tests.txt" 2>&1
    echo "Saber.Cuda.Tests exit $?"
    "$dotnet_dir/Saber.Benchmarks" gpu-overhead > "$out/gpu-overhead.md" 2>&1; echo "gpu-overhead exit $?"
    tail -n 6 "$out/dotnet-cuda-tests.txt"

    # The GPU engine (gpu-forward): ONNX Runtime's GPU libraries come in parts (see the header).
    parts=$dotnet_dir/ort-gpu.parts.sha256
    if [ ! -x "$dotnet_dir/saber-fixture" ] || [ ! -x "$dotnet_dir/saber" ] || [ ! -f "$parts" ]; then
        echo "gpu-forward skipped: the carried .NET folder predates gpu-forward (rerun tools/prepare-gpu-carry.sh)"
    elif ! (cd .carry && sha256sum --quiet -c "$parts") > "$out/ort-gpu-parts.txt" 2>&1; then
        echo "gpu-forward skipped: ONNX Runtime's GPU libraries are not all here (.carry/ort-gpu.part-*: $(cut -c67- "$parts" | tr '\n' ' ')):"
        tail -n 5 "$out/ort-gpu-parts.txt"
    else
        cat .carry/ort-gpu.part-* | tar -C /tmp/saber-dotnet -xJ
        # CUDA 13, cuBLAS, cuRAND and cuDNN 9 from the PyTorch venv's NVIDIA wheels (no TensorRT there: onnx-cuda only).
        for lib in /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib; do
            [ -d "$lib" ] && LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        done
        export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
        model_tmp=$(mktemp -d)
        if ! "$dotnet_dir/saber-fixture" write --family llada --out "$model_tmp/ckpt" > "$out/fixture.txt" 2>&1 ||
            ! "$dotnet_dir/saber" import "$model_tmp/ckpt" "$model_tmp/model" > "$out/import.txt" 2>&1; then
            echo "gpu-forward not run: the fixture or its import failed"; tail -n 20 "$out/fixture.txt" "$out/import.txt"
        else
            timeout 300 "$dotnet_dir/Saber.Benchmarks" gpu-forward --model "$model_tmp/model" --out "$out/gpu-forward.md" > "$out/gpu-forward.txt" 2>&1
            status=$?
            case $status in
                0) echo "gpu-forward: PASS ($out/gpu-forward.md)" ;;
                3) echo "gpu-forward skipped: $(tail -n 1 "$out/gpu-forward.txt")" ;;
                *) echo "gpu-forward exit $status"; tail -n 20 "$out/gpu-forward.txt" ;;
            esac
        fi
        rm -rf "$model_tmp"
    fi
fi
tail -n 5 "$out"/ctest.txt
