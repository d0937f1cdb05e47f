#!/usr/bin/env bash
# m2clipd against the real vivid V4L2 driver, in a small VM (../shared/tools/vivid-vm, or
# $VIVID_VM): capture, action events to two subscriber processes, unplug and reconnect.
# Uses the debug build (swift build first). The VM's first run builds its kernel (~5 min).
#
#   scripts/test-vivid.sh [SCRIPT ARGS...]   default Tests/Vivid/scenario.sh; SCRIPT gets the work
#                                             folder (tiny.m2c) and the sample video first
# VIVID_TIMEOUT: seconds the VM may run (default 300). VIVID_SKIP_STATUS: exit status when no VM
# can run here (default 0, a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tool=${VIVID_VM:-}
if [[ -z $tool ]]; then
    for candidate in "$root/../shared/tools/vivid-vm/run-in-vivid-vm.sh" /work/shared/tools/vivid-vm/run-in-vivid-vm.sh; do
        [[ -x $candidate ]] && { tool=$candidate; break; }
    done
fi
if [[ -z $tool || ! -x $tool ]]; then
    echo "test-vivid: SKIPPED: no vivid-vm tool found (set VIVID_VM to run-in-vivid-vm.sh)"
    exit "${VIVID_SKIP_STATUS:-0}"
fi
bin=$(swift build --show-bin-path)
for b in m2clip m2clipd; do [[ -x $bin/$b ]] || { echo "test-vivid: build first ($bin/$b missing)" >&2; exit 1; }; done

work=$(mktemp -d /tmp/m2clip-vivid.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin/m2clip" random-checkpoint --preset tiny --out "$work/clip" >/dev/null
printf 'juggling\nsurfing\n' > "$work/labels.txt"
"$bin/m2clip" convert --hf "$work/clip" --labels "$work/labels.txt" --frames 4 --out "$work/tiny.m2c" >/dev/null
rm -rf "$work/clip"
video=$root/Tests/Fixtures/video/phone_h264_rot90.mp4

copies=(--copy "$work" --copy "$video")
for resources in "$bin"/*.resources; do [[ -d $resources ]] && copies+=(--copy "$resources"); done
scenario=("$root/Tests/Vivid/scenario.sh")
(($#)) && scenario=("$(realpath "$1")" "${@:2}")
"$tool" --timeout "${VIVID_TIMEOUT:-300}" "${copies[@]}" \
    --exe "$bin/m2clipd:/usr/local/bin/m2clipd" --exe "$bin/m2clip:/usr/local/bin/m2clip" \
    --exe "$(command -v v4l2-ctl):/usr/local/bin/v4l2-ctl" --exe "$(command -v ffprobe):/usr/local/bin/ffprobe" \
    --vivid-opts "n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0" \
    -- "${scenario[0]}" "$work" "$video" "${scenario[@]:1}" || status=$?
status=${status:-0}
if ((status == 125)); then
    # The tool could not build or boot its VM (reason above): the machine, not m2clip.
    echo "test-vivid: SKIPPED: the vivid VM is not available on this machine (exit 125)"
    exit "${VIVID_SKIP_STATUS:-0}"
fi
exit "$status"
