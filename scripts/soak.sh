#!/usr/bin/env bash
# Soak benchmark (not CI): 100,000 trivial jobs through the echo example against the local
# emulator; fails if the worker's resident memory grows by 10 % or more after warm-up.
#
#   scripts/soak.sh                  # release build, 100,000 jobs
#   SOAK_JOBS=20000 scripts/soak.sh  # fewer jobs
#   PROFILE=dev scripts/soak.sh      # debug build (reuses the test build)
#   scripts/soak.sh mixed            # the release soak: 1,000,000 mixed jobs and 100,000
#                                    # streams; RSS +5 % at most, fds and threads bounded
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${PROFILE:-release}" = release ]; then profile=(--release); fi
test=soak_memory_stays_flat
if [ "${1:-}" = mixed ]; then test=soak_mixed_jobs_stay_flat; fi
exec cargo test "${profile[@]}" --test soak -- --ignored --nocapture --exact "$test"
