#!/usr/bin/env bash
# Soaks m2clipd (issue 11): Tests/Vivid/soak.sh for SECONDS with three file cameras and vivid's
# V4L2 camera in the vivid VM — many subscribers, SIGHUP reloads, unplugs — then checks events
# (none lost or duplicated for connected subscribers, every start ended) and flat RSS/fds/threads.
#
#   scripts/soak.sh [SECONDS]       default 120 (the test command runs 90; hours by hand)
# Without the VM it soaks the file cameras on this host and says so. Uses the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}

status=0
VIVID_TIMEOUT=$((seconds + seconds / 4 + 300)) VIVID_SKIP_STATUS=77 \
    scripts/test-vivid.sh Tests/Vivid/soak.sh "$seconds" vivid || status=$?
((status == 77)) || exit "$status"

echo "soak: no vivid VM here: soaking the file cameras on this host (no V4L2 camera, no unplugs)"
bin=$(swift build --show-bin-path)
work=$(mktemp -d /tmp/m2clip-soak.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin/m2clip" random-checkpoint --preset tiny --out "$work/clip" >/dev/null
printf 'juggling\nsurfing\n' > "$work/labels.txt"
"$bin/m2clip" convert --hf "$work/clip" --labels "$work/labels.txt" --frames 4 --out "$work/tiny.m2c" >/dev/null
PATH=$bin:$PATH Tests/Vivid/soak.sh "$work" "$PWD/Tests/Fixtures/video/phone_h264_rot90.mp4" "$seconds"
