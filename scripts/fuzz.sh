#!/usr/bin/env bash
# Fuzzes m2clip's parsers with libFuzzer and AddressSanitizer (issue 11).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 600 s, every target
# M2CLIP_FUZZ_SEED fixes libFuzzer's seed (the test command's short run uses 1); default: random.
# Builds Fuzz/m2clip-fuzz (the FuzzTargets library, -sanitize=fuzzer,address) in .build-fuzz,
# then runs each target for SECONDS on Fuzz/Corpus/TARGET. New inputs go to .build-fuzz/corpus
# (not committed); a crash is written to .build-fuzz/crashes/TARGET/ and fails the script: copy it
# to Fuzz/Regressions/TARGET/ with a name saying what it found, fix the parser, and the test
# suite (FuzzCorpusTests) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
all=(safetensors json model-metadata hf-config tokenizer daemon-config subscribe-line clip-list batch v4l2-frame stream-url)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

echo "== building the fuzz binary (.build-fuzz)"
M2CLIP_FUZZ=1 swift build --scratch-path .build-fuzz --product m2clip-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library 2>&1 | grep -v "ld.gold: warning: Cannot export local symbol" || true
binary=.build-fuzz/debug/m2clip-fuzz
[[ -x $binary ]] || { echo "fuzz: the build failed" >&2; exit 1; }

failed=()
for target in "${targets[@]}"; do
    corpus=.build-fuzz/corpus/$target crashes=.build-fuzz/crashes/$target
    mkdir -p "$corpus" "$crashes"
    echo "== $target: ${seconds} s"
    if ! M2CLIP_FUZZ_TARGET=$target ASAN_OPTIONS=detect_leaks=0 "$binary" -max_total_time="$seconds" \
            -rss_limit_mb=2048 -max_len=65536 -timeout=20 -print_final_stats=1 -seed="${M2CLIP_FUZZ_SEED:-0}" \
            -artifact_prefix="$crashes/" "$corpus" "Fuzz/Corpus/$target" >".build-fuzz/$target.log" 2>&1; then
        failed+=("$target")
        grep -E "ERROR|==ERROR|Fatal error|SUMMARY|Test unit written" ".build-fuzz/$target.log" | head -8 || true
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" ".build-fuzz/$target.log" | tr '\n' ' ' || true
    echo
done
rm -rf /dev/shm/m2clip-fuzz-* 2>/dev/null || true
if ((${#failed[@]})); then
    echo "fuzz: crashes in ${failed[*]} (inputs under .build-fuzz/crashes/, logs .build-fuzz/TARGET.log)" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds} s without a crash"
