#!/usr/bin/env bash
# Cross-compiles the C kernels with Tests/NEON/neon_kernel_test.c, Tests/NEON/q8_test.c (the
# int8 GEMM), Tests/NEON/f16_test.c (fp16 and bf16 conversions, the fp16- and bf16-weight
# GEMMs) and Tests/NEON/backward_test.c (the training kernels) for AArch64 and runs them
# under qemu-user: the NEON variant against the scalar reference, from any host.
# Usage: scripts/test-neon.sh   (exit status is the test's)
set -euo pipefail
cd "$(dirname "$0")/.."

CC=aarch64-linux-gnu-gcc
QEMU=qemu-aarch64
SYSROOT=/usr/aarch64-linux-gnu

if ! command -v "$CC" >/dev/null || ! command -v "$QEMU" >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "test-neon: installing gcc-aarch64-linux-gnu and qemu-user" >&2
        apt-get update
        apt-get install -y gcc-aarch64-linux-gnu qemu-user
    else
        echo "test-neon: needs $CC and $QEMU; install them with" >&2
        echo "  sudo apt-get install gcc-aarch64-linux-gnu qemu-user" >&2
        exit 1
    fi
fi

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

for test in neon_kernel_test q8_test f16_test backward_test; do
    "$CC" -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I Sources/CKernels/include \
        Sources/CKernels/ref/*.c Sources/CKernels/core/*.c Sources/CKernels/arm/*.c \
        "Tests/NEON/$test.c" -o "$build/$test" -lm -lpthread
done

# The test asserts that dispatch picks NEON; a forced variant would defeat it.
unset M2CLIP_KERNELS

echo "== qemu-aarch64 (default CPU)"
"$QEMU" -L "$SYSROOT" "$build/neon_kernel_test"
"$QEMU" -L "$SYSROOT" "$build/q8_test"
"$QEMU" -L "$SYSROOT" "$build/f16_test"
"$QEMU" -L "$SYSROOT" "$build/backward_test"

# Captured first: `grep -q` closing the pipe early would fail it under pipefail.
cpus=$("$QEMU" -cpu help 2>/dev/null || true)
if grep -qw max <<<"$cpus"; then
    echo "== qemu-aarch64 -cpu max"
    "$QEMU" -L "$SYSROOT" -cpu max "$build/neon_kernel_test"
    "$QEMU" -L "$SYSROOT" -cpu max "$build/q8_test"
    "$QEMU" -L "$SYSROOT" -cpu max "$build/f16_test"
    "$QEMU" -L "$SYSROOT" -cpu max "$build/backward_test"
fi
# The int8 GEMM's fallbacks: a core with dotprod but no i8mm (sdot), and an Armv8.0 core
# (widening multiplies).
for cpu in "neoverse-n1:dotprod, no i8mm" "cortex-a53:no dotprod"; do
    if grep -qw "${cpu%%:*}" <<<"$cpus"; then
        echo "== qemu-aarch64 -cpu ${cpu%%:*} (${cpu#*:})"
        "$QEMU" -L "$SYSROOT" -cpu "${cpu%%:*}" "$build/q8_test"
    fi
done
