#!/usr/bin/env bash
# The concurrent and memory-handling parts of the suite under ThreadSanitizer and
# AddressSanitizer (issue 11): kernels and the thread pool, the event bus and socket server,
# camera pipelines and sources, event history, snapshots, clips, metrics, MQTT, logging, the trainer's
# loader and runs. Each sanitizer builds into its own
# folder (.build-tsan, .build-asan); any report fails the run.
#   scripts/test-sanitizers.sh [thread|address ...]    default: both
set -euo pipefail
cd "$(dirname "$0")/.."

suites='KernelTests|RuntimeTests|OpsTests|EventBusTests|SocketServerTests|ConfigTests|PipelineTests|V4L2SourceTests|StreamFrameSourceTests|HistoryTests|SnapshotWriterTests|SnapshotPipelineTests|ClipRecorderTests|ClipEncodingTests|ClipWriterTests|MP4MuxerTests|VideoEncoderTests|ClipPipelineTests|MetricsTests|MQTTTests|MQTTPublisherTests|LoggingTests|ClipLoaderTests|ClipListTests|TrainerTests|FuzzCorpusTests'
sanitizers=("$@")
((${#sanitizers[@]})) || sanitizers=(thread address)

for sanitizer in "${sanitizers[@]}"; do
    case $sanitizer in
        thread) folder=.build-tsan cflag=-fsanitize=thread
                export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ;;
        address) folder=.build-asan cflag=-fsanitize=address
                 export ASAN_OPTIONS="detect_leaks=0 halt_on_error=1" ;;
        *) echo "test-sanitizers: unknown sanitizer $sanitizer (thread or address)" >&2; exit 2 ;;
    esac
    echo "== building the tests with -sanitize=$sanitizer ($folder)"
    swift build --build-tests --scratch-path "$folder" -Xswiftc -sanitize="$sanitizer" -Xcc "$cflag" \
        2>&1 | grep -E "error|warning: .*sanitiz|Compiling|Build complete" | grep -v "^\[" || true
    echo "== tests under -sanitize=$sanitizer"
    log="$folder/sanitizer-tests.log"
    set +e
    swift test --skip-build --scratch-path "$folder" --filter "$suites" >"$log" 2>&1
    status=$?
    set -e
    grep -E "^(✔|✘) Suite|Test run with|Executed [0-9]+ tests" "$log" | tail -25 || true
    if grep -qE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer" "$log"; then
        grep -E -A12 "WARNING: ThreadSanitizer|ERROR: AddressSanitizer" "$log" | head -60
        echo "test-sanitizers: $sanitizer sanitizer reports (full log: $log)" >&2
        exit 1
    fi
    ((status == 0)) || { tail -n 40 "$log"; echo "test-sanitizers: tests failed under $sanitizer (log: $log)" >&2; exit 1; }
done
echo "test-sanitizers: ${sanitizers[*]}: no reports"
