#!/usr/bin/env bash
# Motion direction through the CLI, end to end: generated videos in which only the frame order
# tells the classes apart (a square moving right, and the exact reverse of each such clip:
# moving left), a tiny untrained M²-CLIP with TED-Adapters and one without, `m2clip train` on
# each, `m2clip eval --json` on held-out clips. The TED model should reach ≥ 95 % top-1; the one
# whose frames are only averaged stays at 50 % (a clip and its reverse look the same to it).
#
#   scripts/train-motion-demo.sh [WORKDIR]     (default /tmp/m2clip-motion; needs ffmpeg)
# Uses $M2CLIP (default .build/release/m2clip; build it with `swift build -c release --product m2clip`).
set -euo pipefail
M2CLIP=${M2CLIP:-.build/release/m2clip}
DIR=${1:-/tmp/m2clip-motion}
EPOCHS=${EPOCHS:-6}
rm -rf "$DIR"
mkdir -p "$DIR/train/moving left" "$DIR/train/moving right" "$DIR/val"

# clip NAME Y X0 [reverse]: 8 frames at 8 fps, a 16-px square moving 5 px a frame over 64×64
clip() {
    local filter="[0][1]overlay=x='$3+t*40':y=$2:shortest=1"
    [ "${4:-}" = reverse ] && filter="$filter,reverse"
    ffmpeg -loglevel error -y -f lavfi -i "color=c=0x202020:s=64x64:r=8:d=1" \
        -f lavfi -i "color=c=0xE0C040:s=16x16:r=8:d=1" -filter_complex "$filter" \
        -pix_fmt yuv420p -c:v libx264 -preset ultrafast -crf 12 "$1"
}
RANDOM=1
for i in $(seq 1 24); do
    y=$((RANDOM % 48)); x=$((RANDOM % 9))
    clip "$DIR/train/moving right/r$i.mp4" $y $x
    clip "$DIR/train/moving left/l$i.mp4" $y $x reverse
done
: > "$DIR/val/list.txt"
for i in $(seq 1 16); do
    y=$((RANDOM % 48)); x=$((RANDOM % 9))
    clip "$DIR/val/r$i.mp4" $y $x
    clip "$DIR/val/l$i.mp4" $y $x reverse
    printf 'r%d.mp4 moving right\nl%d.mp4 moving left\n' "$i" "$i" >> "$DIR/val/list.txt"
done
printf 'moving left\nmoving right\n' > "$DIR/labels.txt"

"$M2CLIP" random-checkpoint --preset tiny --seed 11 --out "$DIR/clip"
for variant in ted plain; do
    layers=0,1; [ $variant = plain ] && layers=""
    "$M2CLIP" convert --hf "$DIR/clip" --labels "$DIR/labels.txt" --preset k400 --ted-layers "$layers" \
        --frames 8 --out "$DIR/$variant.m2c" > /dev/null
    "$M2CLIP" train --model "$DIR/$variant.m2c" --train "$DIR/train" --val "$DIR/val/list.txt" \
        --out "$DIR/run-$variant" --epochs "$EPOCHS" --batch 8 --lr 1e-2 --warmup-epochs 1 --no-flip --threads 2
    "$M2CLIP" eval --model "$DIR/run-$variant/model.m2c" --list "$DIR/val/list.txt" --json \
        --confusion "$DIR/run-$variant/confusion.csv" > "$DIR/eval-$variant.json"
done
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
ted, plain = (json.load(open(f"{d}/eval-{v}.json")) for v in ("ted", "plain"))
print(f"held-out top-1: with TED-Adapters {ted['top1']:.3f}, frames only averaged {plain['top1']:.3f}")
ok = ted["top1"] >= 0.95 and abs(plain["top1"] - 0.5) < 1e-9
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
