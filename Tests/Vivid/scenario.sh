#!/bin/sh
# Runs as root inside the vivid VM (scripts/test-vivid.sh starts it): m2clipd on vivid's
# /dev/video0 and on a looped file, two subscriber processes, then an unplug through vivid's
# `disconnect` control; the V4L2 camera's action clips, encoded from its frames. Prints one
# line per check and exits 1 when any fails.
#
#   scenario.sh WORKDIR VIDEO      (WORKDIR holds tiny.m2c; m2clipd, m2clip, v4l2-ctl, ffprobe on PATH)
set -u
work=$1
video=$2
cd "$work" || exit 2
failures=0
check() { # check NAME CONDITION...
    name=$1; shift
    if "$@"; then echo "PASS $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}
# Lines of FILE that have every one of the given substrings.
lines() {
    file=$1; shift
    pattern_out=$(cat "$file")
    for p in "$@"; do pattern_out=$(printf '%s\n' "$pattern_out" | grep -F -- "$p"); done
    [ -n "$pattern_out" ] && printf '%s\n' "$pattern_out" | wc -l || echo 0
}
# wait_for SECONDS FILE MIN SUBSTRINGS...: until FILE has MIN lines with all substrings.
wait_for() {
    seconds=$1; file=$2; min=$3; shift 3
    i=0
    while [ "$i" -lt $((seconds * 5)) ]; do
        [ -f "$file" ] && [ "$(lines "$file" "$@")" -ge "$min" ] && return 0
        usleep 200000
        i=$((i + 1))
    done
    return 1
}

v4l2-ctl -d /dev/video0 --info | grep -E "Driver name|Card type" | sed 's/^/device: /'

cat > m2clipd.yaml <<YAML
model: tiny.m2c
threads: 1
socket: {path: $work/events.sock}
stats_interval_s: 1
shutdown_timeout_s: 10
state_dir: $work/state
clips: {cameras: [vivid], pre_roll_s: 1, post_roll_s: 1, encode_fps: 10}
cameras:
  - id: vivid
    source: {v4l2: /dev/video0, width: 320, height: 180, fps: 30, format: YUYV}
    sample_fps: 8
    stride: 2
    head: zero-shot
    thresholds: {start: 0.3, end: 0.2}
  - id: file
    source: {file: $video, loop: true}
    sample_fps: 4
    stride: 2
    head: zero-shot
    thresholds: {start: 0.3, end: 0.2}
YAML

m2clipd --config m2clipd.yaml 2> daemon.log &
daemon=$!
i=0
while [ ! -S events.sock ] && [ "$i" -lt 150 ]; do usleep 200000; i=$((i + 1)); done
check "daemon listens" test -S events.sock

m2clip subscribe --socket events.sock --json > all.ndjson 2> sub1.err &
sub1=$!
wait_for 10 all.ndjson 1 '"type":"hello"'
epoch=$(grep -F '"type":"hello"' all.ndjson | head -1 | sed 's/.*"epoch":"\([^"]*\)".*/\1/')
# The second subscriber replays the run from its start (since seq 0), then follows live.
m2clip subscribe --socket events.sock --json --camera vivid --since 0 --epoch "$epoch" > vivid.ndjson 2> sub2.err &
sub2=$!

check "vivid online (replayed with since)" wait_for 20 vivid.ndjson 1 '"type":"camera.status"' '"camera":"vivid"' '"status":"online"'
check "actions from the V4L2 camera" wait_for 30 vivid.ndjson 1 '"type":"action.start"' '"camera":"vivid"'
check "the live subscriber gets them too" wait_for 10 all.ndjson 1 '"type":"action.' '"camera":"vivid"'
check "stats count V4L2 frames" wait_for 10 all.ndjson 1 '"type":"stats"' '"camera":"vivid"'
grep -F '"type":"stats"' all.ndjson | tail -1 | sed 's/^/stats: /'

# Unplug: vivid's disconnect button acts as a USB disconnect until every handle is closed.
v4l2-ctl -d /dev/video0 -c disconnect=1 || echo "v4l2-ctl disconnect failed: $?"
check "unplug gives camera.status offline" wait_for 20 all.ndjson 1 '"type":"camera.status"' '"camera":"vivid"' '"status":"offline"'
grep -F '"status":"offline"' all.ndjson | grep -F '"camera":"vivid"' | head -1 | sed 's/^/offline line: /'
check "back online by itself" wait_for 20 vivid.ndjson 2 '"type":"camera.status"' '"camera":"vivid"' '"status":"online"'
# The unplug ended the open action; a new one starts once windows fill again after the reconnect.
sed -n '/"status":"offline"/,$p' vivid.ndjson > after-unplug.ndjson
i=0
while [ "$(lines after-unplug.ndjson '"type":"action.start"' '"camera":"vivid"')" -lt 1 ] && [ "$i" -lt 150 ]; do
    usleep 200000
    i=$((i + 1))
    sed -n '/"status":"offline"/,$p' vivid.ndjson > after-unplug.ndjson
done
check "actions again after the reconnect" test "$(lines after-unplug.ndjson '"type":"action.start"' '"camera":"vivid"')" -ge 1
# Every window scores above start, so an action was open at the unplug: it ends just before offline.
sed -n '1,/"status":"offline"/p' vivid.ndjson | grep -v '"type":"stats"' | tail -n 2 | head -n 1 > before-offline.ndjson
check "the unplug ended the open action first" test "$(lines before-offline.ndjson '"type":"action.end"' '"camera":"vivid"')" -eq 1
check "the file camera never went offline" test "$(lines all.ndjson '"camera":"file"' '"status":"offline"')" -eq 0
check "the file camera kept producing" test "$(lines all.ndjson '"type":"action.' '"camera":"file"')" -ge 1
check "the filtered subscriber saw only vivid" test "$(grep -v '"type":"stats"' vivid.ndjson | grep -c -F '"camera":"file"')" -eq 0

# SIGHUP: the cameras restart from the file (the V4L2 device is closed and opened again); the
# subscribers stay connected.
onlines=$(lines vivid.ndjson '"type":"camera.status"' '"camera":"vivid"' '"status":"online"')
kill -HUP "$daemon"
check "SIGHUP restarts the V4L2 camera" wait_for 20 vivid.ndjson $((onlines + 1)) '"type":"camera.status"' '"camera":"vivid"' '"status":"online"'
check "reload said why it went offline" test "$(lines vivid.ndjson '"camera":"vivid"' '"reason":"reload"')" -eq 1
check "subscribers stayed connected through the reload" kill -0 "$sub1" "$sub2"

kill -TERM "$daemon"
wait "$daemon"
status=$?
check "SIGTERM exits 0" test "$status" -eq 0
wait "$sub1" "$sub2" 2>/dev/null
check "subscribers got the final offline" wait_for 5 all.ndjson 1 '"camera":"vivid"' '"reason":"shutdown"'
echo "events: $(wc -l < all.ndjson) lines to subscriber 1, $(wc -l < vivid.ndjson) to subscriber 2"

# Clips of the V4L2 camera (YUYV frames encoded to H.264): every action.end names one, and each
# named file is there after the shutdown, an H.264 MP4 of the camera's 320x180 with frames.
grep -F '"type":"action.end"' vivid.ndjson | sed -n 's/.*"clip":{[^}]*"path":"\([^"]*\)".*/\1/p' > clips.txt
check "every vivid action.end names a clip" test "$(wc -l < clips.txt)" -eq "$(lines vivid.ndjson '"type":"action.end"')"
good=0
while read -r clip; do
    probe=$(ffprobe -v error -select_streams v:0 -count_frames \
        -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 "$clip" 2>&1)
    case $probe in
    h264,320,180,[1-9]*) good=$((good + 1)); echo "clip $(basename "$clip"): $probe (codec,width,height,frames)" ;;
    *) echo "clip $clip: $probe" ;;
    esac
done < clips.txt
check "the clips are H.264 320x180 MP4s that decode ($good of $(wc -l < clips.txt))" \
    test "$good" -ge 1 -a "$good" -eq "$(wc -l < clips.txt)"

if [ "$failures" -ne 0 ]; then
    echo "--- daemon log"; tail -n 30 daemon.log
    echo "--- vivid status events"; grep -F '"camera":"vivid"' all.ndjson | grep -F camera.status
    echo "--- last vivid events"; grep -v '"type":"stats"' vivid.ndjson | tail -n 3
    echo "--- last stats"; grep -F '"type":"stats"' all.ndjson | tail -n 2
    echo "--- subscriber errors"; cat sub1.err sub2.err
    exit 1
fi
echo "vivid scenario: all checks passed"
