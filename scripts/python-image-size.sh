#!/usr/bin/env bash
# Measure what the Python SDK's hello-world worker image costs, the same way
# scripts/rootfs-test.sh measures ours: the root filesystem of RunPod's documented basic
# worker image (a slim Debian with Python 3.11, `pip install runpod`, handler.py), built with
# debootstrap instead of Docker. Debian's python3.11 stands in for the python:3.11-slim base
# (CPython in /usr/local on the same Debian): within a few MB of it.
#
# Not run by CI: the figure it prints is quoted in README ("Image size").
#
#   sudo scripts/python-image-size.sh            # RUNPOD_PY_VERSION=1.12.0 by default
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=target/rootfs-python
RUNPOD_PY_VERSION=${RUNPOD_PY_VERSION:-1.12.0}

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
rm -rf "$ROOTFS"
debootstrap --variant=minbase --include=ca-certificates,python3,python3-venv \
    "$RELEASE" "$ROOTFS" "$MIRROR" >target/rootfs-python-debootstrap.log 2>&1
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
chroot "$ROOTFS" python3 -m venv /opt/venv
# A host whose HTTPS goes through a proxy with its own CA (PIP_CERT) lends that bundle to pip
# for the install; it is removed afterwards.
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then cp "$PIP_CERT" "$ROOTFS/tmp/host-ca.crt"; fi
cert=()
[ -f "$ROOTFS/tmp/host-ca.crt" ] && cert=(--cert /tmp/host-ca.crt)
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
    /opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "${cert[@]}" \
    "runpod==$RUNPOD_PY_VERSION"
rm -f "$ROOTFS/tmp/host-ca.crt"
cat >"$ROOTFS/handler.py" <<'PY'
import runpod

def handler(job):
    return "Hello World"

runpod.serverless.start({"handler": handler})
PY
# The SDK must import and run its local test mode in the image.
out=$(chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root /opt/venv/bin/python /handler.py --test_input '{"input": {}}' 2>&1)
grep -q "Hello World" <<<"$out" || { echo "$out" >&2; echo "the Python worker did not run" >&2; exit 1; }
# The same slimming as rootfs-test.sh.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/etc/resolv.conf
find "$ROOTFS"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
total=$(du -sb "$ROOTFS" | cut -f1)
venv=$(du -sb "$ROOTFS/opt/venv" | cut -f1)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
echo "Python worker root filesystem (bookworm minbase + python3.11 + runpod $RUNPOD_PY_VERSION): $(mb "$total")"
echo "  of which the venv with runpod and its dependencies:                                $(mb "$venv")"
