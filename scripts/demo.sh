#!/usr/bin/env bash
# The main job for now: build m2clip, embed a few frames and texts with a CLIP checkpoint
# and measure per-clip latency. Without an argument it writes an UNTRAINED ViT-B/16
# checkpoint (random weights) to ./out/vit-b16-untrained: the numbers it prints are then
# latency figures only, not meaningful embeddings.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build -c release --product m2clip
m2clip=.build/release/m2clip

model=${1:-}
if [[ -z $model ]]; then
    model=out/vit-b16-untrained
    if [[ ! -f $model/model.safetensors ]]; then
        $m2clip random-checkpoint --preset vit-b16 --out "$model"
    fi
    echo "NOTE: $model is untrained (random weights); pass a real CLIP checkpoint directory for real answers."
fi

echo "== text embeddings"
$m2clip embed --model "$model" --text "a video of playing guitar" "a video of riding a bike"
echo "== image tower latency, 8-frame clip"
$m2clip bench --model "$model" --frames 8 --iterations 5
