#!/usr/bin/env bash
# Soak benchmark (not CI): 100,000 trivial jobs through the echo example against the local
# emulator; fails if the worker's resident memory grows by 10 % or more after warm-up.
#
#   scripts/soak.sh                  # release build, 100,000 jobs
#   SOAK_JOBS=20000 scripts/soak.sh  # fewer jobs
#   PROFILE=dev scripts/soak.sh      # debug build (reuses the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${PROFILE:-release}" = release ]; then profile=(--release); fi
exec cargo test "${profile[@]}" --test soak -- --ignored --nocapture
