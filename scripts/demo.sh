#!/usr/bin/env bash
# The main job for now (the daemon comes with the m2clipd work): build m2clip, make an
# M²-CLIP model file from a CLIP checkpoint, quantize it to int8, classify a sample video
# and measure per-clip latency.
#
#   scripts/demo.sh [CLIP_CHECKPOINT_DIR] [VIDEO...]
#
# Without a checkpoint it writes an UNTRAINED ViT-B/16 (random weights) to ./out: the labels it
# prints are then meaningless, the latency figures are real. Without videos it uses a short
# sample recording that ships with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build -c release --product m2clip
m2clip=.build/release/m2clip
mkdir -p out

checkpoint=${1:-}
if [[ -z $checkpoint ]]; then
    checkpoint=out/vit-b16-untrained
    [[ -f $checkpoint/model.safetensors ]] || $m2clip random-checkpoint --preset vit-b16 --out "$checkpoint"
    echo "NOTE: $checkpoint is untrained (random weights): labels below are meaningless; pass a real CLIP checkpoint directory for real answers."
fi
shift || true
videos=("$@")
((${#videos[@]})) || videos=(Tests/Fixtures/video/phone_h264_rot90.mp4 Tests/Fixtures/video/vp8.webm)

labels=../shared/data/labels/kinetics_400_labels.csv
[[ -f $labels ]] || { printf 'id,name\n0,juggling\n1,surfing\n2,playing cello\n3,riding a bike\n' > out/labels.csv; labels=out/labels.csv; }

echo "== M²-CLIP model file (zero-shot over the labels: adapters start as the identity)"
[[ -f out/model.m2c ]] || $m2clip convert --hf "$checkpoint" --labels "$labels" --preset k400 --out out/model.m2c
echo "== int8"
[[ -f out/model-int8.m2c ]] || $m2clip quantize out/model.m2c --to int8 --out out/model-int8.m2c --calibrate "${videos[@]}"
echo "== classify"
$m2clip classify "${videos[@]}" --model out/model-int8.m2c --top 3
echo "== latency, 8-frame clip (fp32, then int8)"
$m2clip bench --model out/model.m2c --frames 8 --iterations 3 --video "${videos[0]}"
$m2clip bench --model out/model-int8.m2c --frames 8 --iterations 3 --video "${videos[0]}"
