#!/usr/bin/env bash
# The main job: run m2clipd on a camera and show the action events it emits.
#
#   scripts/run.sh [MODEL.m2c] [CAMERA]       (RUN_SECONDS=30 by default; 0 = until Ctrl-C)
#
# CAMERA: a video file (looped), a V4L2 device such as /dev/video0 (640x480 at 30 fps asked),
# or a stream URL (rtsp://..., http://...).
# Without a model it builds one on the spot: an UNTRAINED M²-CLIP-B/16 from random CLIP
# weights, quantized to int8 — its labels are meaningless, its latency is real. Without a
# camera it loops a short sample recording that ships with the tests. Everything it makes
# goes to ./out.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build -c release --product m2clip
swift build -c release --product m2clipd
bin=.build/release
mkdir -p out

model=${1:-}
if [[ -z $model ]]; then
    model=out/untrained-b16-int8.m2c
    if [[ ! -f $model ]]; then
        echo "== building an UNTRAINED model (random weights) for the demo"
        [[ -f out/vit-b16-untrained/model.safetensors ]] || $bin/m2clip random-checkpoint --preset vit-b16 --out out/vit-b16-untrained
        labels=../shared/data/labels/kinetics_400_labels.csv
        [[ -f $labels ]] || { printf 'juggling\nsurfing\nplaying cello\nriding a bike\n' > out/labels.txt; labels=out/labels.txt; }
        $bin/m2clip convert --hf out/vit-b16-untrained --labels "$labels" --preset k400 --out out/untrained-b16.m2c
        $bin/m2clip quantize out/untrained-b16.m2c --to int8 --out "$model" --clips 2
    fi
    echo "NOTE: $model is untrained: the labels in the events are meaningless."
fi
camera=${2:-Tests/Fixtures/video/phone_h264_rot90.mp4}
case $camera in
    /dev/video*) source="{v4l2: $camera, width: 640, height: 480, fps: 30}" ;;
    *://*) source="{url: \"$camera\"}" ;;
    *) source="{file: $(realpath "$camera"), loop: true}" ;;
esac

cat > out/m2clipd.yaml <<YAML
model: $(realpath "$model")
socket:
  path: $PWD/out/events.sock
stats_interval_s: 5
cameras:
  - id: demo
    source: $source
    sample_fps: 8
    stride: 4
    head: zero-shot
    labels: [juggling, surfing, playing cello, riding a bike, walking the dog]
    thresholds: {start: 0.2, end: 0.19}   # untrained: scores sit near 1/5
YAML

$bin/m2clipd --config out/m2clipd.yaml &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -S out/events.sock ]] && break; sleep 0.2; done
echo "== events from m2clipd (out/events.sock)"
if [[ ${RUN_SECONDS:-30} == 0 ]]; then
    $bin/m2clip subscribe --socket out/events.sock
else
    # Stop the daemon after RUN_SECONDS: the subscriber sees the open actions end and the
    # final lines, then end of stream.
    $bin/m2clip subscribe --socket out/events.sock &
    subscriber=$!
    sleep "${RUN_SECONDS:-30}"
    kill -TERM $daemon
    wait $subscriber || true
fi
