#!/usr/bin/env bash
# The test command (README, .ci/run): installs system packages, builds, runs the Swift
# test suite with the best kernels, again with every other x86 variant forced for the
# kernel and parity tests, then the NEON kernels under qemu-aarch64, a short fuzz of every
# parser (libFuzzer + AddressSanitizer), then m2clipd against
# the real vivid V4L2 driver in a small VM, the fault matrix (full disks, kill -9 mid-write)
# and a 90 s soak of m2clipd (scripts/soak.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift build --build-tests

echo "== swift test (kernels: default)"
swift test --skip-build

for variant in scalar avx2; do
    echo "== kernel and parity tests with M2CLIP_KERNELS=$variant"
    M2CLIP_KERNELS=$variant swift test --skip-build --filter 'KernelTests|ParityTests'
done

echo "== NEON kernels under qemu-aarch64"
scripts/test-neon.sh

echo "== fuzz: every parser 15 s under libFuzzer and AddressSanitizer (scripts/fuzz.sh; 600 s by hand)"
M2CLIP_FUZZ_SEED=1 scripts/fuzz.sh 15

echo "== m2clipd on the vivid V4L2 driver in a VM (first run builds the VM kernel, ~5 min)"
scripts/test-vivid.sh

echo "== fault injection: full disks and kill -9 during model and checkpoint writes (scripts/fault-matrix.sh)"
scripts/fault-matrix.sh 4

echo "== soak: m2clipd 90 s with file and V4L2 cameras, many subscribers, reloads, unplugs (hours by hand)"
scripts/soak.sh 90
