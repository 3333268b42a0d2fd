#!/usr/bin/env bash
# Soak benchmark (not CI): 100,000 trivial jobs through the echo example against the local
# emulator; fails if the worker's resident memory grows by 10 % or more after warm-up.
#
#   scripts/soak.sh                  # release build, 100,000 jobs
#   SOAK_JOBS=20000 scripts/soak.sh  # fewer jobs
#   PROFILE=dev scripts/soak.sh      # debug build (reuses the test build)
#   scripts/soak.sh mixed            # the release soak: 1,000,000 mixed jobs and 100,000
#                                    # streams; RSS +5 % at most, fds and threads bounded
#   GLIBC_TUNABLES= scripts/soak.sh mixed   # with glibc's default per-thread caches (the
#                                    # mixed soak otherwise runs the worker as the images do)
#   SOAK_KIND=logged SOAK_HEAPTRACK=/tmp/soak.raw scripts/soak.sh mixed   # heap profile
set -euo pipefail
# The worker's allocator settings as the Dockerfiles set them, unless set (even to empty).
export GLIBC_TUNABLES="${GLIBC_TUNABLES-$(sed -n 's/^ENV GLIBC_TUNABLES=//p' "$(dirname "$0")/../Dockerfile")}"
cd "$(dirname "$0")/.."
profile=()
if [ "${PROFILE:-release}" = release ]; then profile=(--release); fi
test=soak_memory_stays_flat
if [ "${1:-}" = mixed ]; then test=soak_mixed_jobs_stay_flat; fi
exec cargo test "${profile[@]}" --test soak -- --ignored --nocapture --exact "$test"
