#!/usr/bin/env bash
# Installs what building and testing m2clip needs on a fresh Debian machine (run as root,
# or with sudo available). Idempotent: does nothing when everything is there.
set -euo pipefail

packages=(pkg-config gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
          libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg systemd
          libv4l-dev v4l-utils libmosquitto-dev mosquitto mosquitto-clients libsystemd-dev
          libsqlite3-dev python3-prometheus-client)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    # policy-rc.d exit 101: packages (mosquitto) install without starting their services; the
    # MQTT tests start their own broker on a free port, and a host without systemd running
    # would fail the postinst otherwise.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.1 or newer needed)" >&2; exit 1; }
