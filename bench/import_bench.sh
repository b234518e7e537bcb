#!/usr/bin/env bash
# The import benchmark: a full-size LLaDA-8B-shaped checkpoint (d_model 4096, 32 layers, 32 heads, mlp 12288,
# vocabulary 126464, untied, BF16, 4 shards, ~16 GB of pseudo-random weights) imported by `saber import --dtype bf16`,
# against `cp -r` of the same folder as the yardstick, each timed as a whole process with /usr/bin/time -v (wall time,
# peak RSS). Needs ~50 GB free under WORK (the checkpoint, the model and the copy); deletes them at the end.
# Usage: bench/import_bench.sh [WORK_DIR] [RUNS]   (default /tmp/import-bench, 3)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/import-bench}"
runs="${2:-3}"
checkpoint="$work/LLaDA-8B-shaped"
mkdir -p "$work"
trap 'rm -rf "$checkpoint" "$work/model" "$work/copy"' EXIT

dotnet build "$repo/tests/Saber.Checkpoints.Fixtures" -c Release -v q >/dev/null
dotnet build "$repo/src/Saber.Cli" -c Release -v q >/dev/null
dotnet "$repo/tests/Saber.Checkpoints.Fixtures/bin/Release/net10.0/saber-fixture.dll" write \
    --family llada --preset llada-8b --shards 4 --out "$checkpoint" --no-tokenizer
# The importer needs a tokenizer.json (copied as it is): a stub naming LLaDA's mask token will do.
echo '{"version":"1.0","added_tokens":[{"id":126336,"content":"<|mdm_mask|>","special":true}],"model":{"type":"BPE","vocab":{},"merges":[]}}' \
    > "$checkpoint/tokenizer.json"

saber="$repo/src/Saber.Cli/bin/Release/net10.0/saber"
for i in $(seq "$runs"); do
    rm -rf "$work/copy" "$work/model"
    /usr/bin/time -f "copy   run $i: %e s wall, %M KB peak RSS" cp -r "$checkpoint" "$work/copy"
    rm -rf "$work/copy"
    /usr/bin/time -f "import run $i: %e s wall, %M KB peak RSS" "$saber" import "$checkpoint" "$work/model" --dtype bf16 >/dev/null 2>"$work/import-$i.log" \
        || { cat "$work/import-$i.log"; exit 1; }
    tail -1 "$work/import-$i.log"
done
