#!/usr/bin/env bash
# Prove the runtime image works, without a Docker engine.
#
# Builds the root filesystem the Dockerfile's runtime stage ships (Debian bookworm minbase +
# ca-certificates, apt lists and caches removed, docs/man/locales removed as in Debian's slim
# images, a non-root user 10001), copies the release `hello` and `echo` workers in, and runs
# them inside it with `chroot --userspec`:
#   1. local test mode: `hello` must print {"output":"Hello World"}, `echo` its input;
#   2. production mode: against `runpod-emulator` running outside the chroot on 127.0.0.1,
#      a job submitted with curl to /v2/<endpoint>/runsync must come back COMPLETED.
# Prints the root filesystem size plus the binary size (the image size the README quotes).
#
# Needs root, debootstrap and network access to Debian's mirror. The root filesystem is cached
# in target/rootfs, keyed by this script's hash, so a second run only rebuilds the binaries
# (about 30 s the first time). Mounts nothing. Exits non-zero on any failure.
#
#   sudo scripts/rootfs-test.sh          # DEBIAN_MIRROR=… to use another mirror
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=target/rootfs
WORKER_UID=10001
ENDPOINT=rootfs

say() { printf '== %s\n' "$*"; }
fail() { printf 'rootfs-test: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap and chroot)"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
command -v curl >/dev/null || fail "curl is not installed"

# ---- 1. Release binaries.
say "cargo build --release (hello, echo, runpod-emulator)"
cargo build --release --locked -p worker-examples --example hello --example echo
cargo build --release --locked -p runpod-emulator

# ---- 2. The root filesystem, cached by this script's hash.
key=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$ROOTFS/.rootfs-key" ] && [ "$(cat "$ROOTFS/.rootfs-key")" = "$key" ]; then
    say "reusing $ROOTFS (built by this version of the script)"
else
    say "debootstrap --variant=minbase $RELEASE into $ROOTFS"
    rm -rf "$ROOTFS"
    start=$SECONDS
    debootstrap --variant=minbase --include=ca-certificates "$RELEASE" "$ROOTFS" "$MIRROR" \
        >target/rootfs-debootstrap.log 2>&1 \
        || { tail -20 target/rootfs-debootstrap.log >&2; fail "debootstrap failed (log: target/rootfs-debootstrap.log)"; }
    # As the Dockerfile's runtime stage: the same user, no apt lists or caches.
    chroot "$ROOTFS" groupadd --gid "$WORKER_UID" worker
    chroot "$ROOTFS" useradd --uid "$WORKER_UID" --gid "$WORKER_UID" --no-create-home \
        --shell /usr/sbin/nologin worker
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log \
        "$ROOTFS"/var/cache/debconf/*-old
    # As Debian's slim images (the base of the runtime stage): no docs, man pages or locales.
    find "$ROOTFS"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* \
        "$ROOTFS"/usr/share/groff/* "$ROOTFS"/usr/share/lintian/* "$ROOTFS"/usr/share/linda/*
    echo "$key" >"$ROOTFS/.rootfs-key"
    say "root filesystem built in $((SECONDS - start)) s"
fi
rm -f "$ROOTFS"/usr/local/bin/*
base_bytes=$(du -sb --exclude=.rootfs-key "$ROOTFS" | cut -f1)
install -m 0755 target/release/examples/hello target/release/examples/echo "$ROOTFS/usr/local/bin/"

# Run a command inside the root filesystem as the non-root user, with an empty environment
# plus the given variables.
in_rootfs() { chroot --userspec="$WORKER_UID:$WORKER_UID" "$ROOTFS" /usr/bin/env -i "$@"; }

in_rootfs id -u | grep -qx "$WORKER_UID" || fail "the worker does not run as uid $WORKER_UID"

# ---- 3. Local test mode.
say "local test mode: hello"
out=$(in_rootfs SLEEP_TIME=1 /usr/local/bin/hello 2>target/rootfs-hello-local.log) \
    || { cat target/rootfs-hello-local.log >&2; fail "hello exited non-zero in local test mode"; }
[ "$out" = '{"output":"Hello World"}' ] || fail "hello printed $out"
echo "$out"
say "local test mode: echo"
out=$(in_rootfs /usr/local/bin/echo --test_input '{"input": {"image": "rootfs", "n": 1}}' 2>/dev/null) \
    || fail "echo exited non-zero in local test mode"
[ "$out" = '{"output":{"image":"rootfs","n":1}}' ] || fail "echo printed $out"
echo "$out"

# ---- 4. Production mode against the emulator outside the chroot.
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

emulator_out=target/rootfs-emulator.out
target/release/runpod-emulator --port 0 --endpoint-id "$ENDPOINT" >"$emulator_out" 2>target/rootfs-emulator.log &
pids+=($!)
for _ in $(seq 100); do grep -q "RUNPOD_WEBHOOK_GET_JOB" "$emulator_out" && break; sleep 0.1; done
endpoint=$(sed -n 's/^RunPod emulator listening on \(http[^ ]*\)$/\1/p' "$emulator_out")
[ -n "$endpoint" ] || { cat "$emulator_out" target/rootfs-emulator.log >&2; fail "the emulator did not start"; }
# The worker environment the emulator prints: `  NAME='value' \`.
mapfile -t worker_env < <(sed -n "s/^  \(RUNPOD_[A-Z_]*\)='\(.*\)' \\\\$/\1=\2/p" "$emulator_out")
[ "${#worker_env[@]}" -ge 5 ] || fail "could not read the worker environment from the emulator"
# And the environment the image itself sets (`ENV NAME=value` lines of the runtime stage).
mapfile -t image_env < <(sed -n 's/^ENV \(GLIBC_TUNABLES=[^ ]*\)$/\1/p' Dockerfile)
[ "${#image_env[@]}" -eq 1 ] || fail "could not read GLIBC_TUNABLES from the Dockerfile"

for worker in hello echo; do
    say "production mode: $worker against $endpoint"
    # chroot directly (not through the function), so $! is the worker itself once chroot and
    # env exec it, and SIGTERM reaches it.
    chroot --userspec="$WORKER_UID:$WORKER_UID" "$ROOTFS" /usr/bin/env -i "${worker_env[@]}" "${image_env[@]}" \
        RUNPOD_POD_ID="rootfs-$worker" SLEEP_TIME=1 "/usr/local/bin/$worker" \
        >"target/rootfs-$worker-prod.log" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    answer=$(curl -sS --max-time 60 -X POST "$endpoint/runsync" -H 'Content-Type: application/json' \
        -d '{"input": {"name": "rootfs"}}') || fail "runsync request failed"
    echo "$answer"
    case "$answer" in
        *'"status":"COMPLETED"'*) ;;
        *) cat "target/rootfs-$worker-prod.log" >&2; fail "$worker: the job did not complete" ;;
    esac
    if [ "$worker" = hello ]; then
        case "$answer" in *'"output":"Hello World"'*) ;; *) fail "hello: wrong output" ;; esac
    else
        case "$answer" in *'"output":{"name":"rootfs"}'*) ;; *) fail "echo: wrong output" ;; esac
    fi
    # SIGTERM: the worker must stop taking jobs and exit 0.
    kill -TERM "$wpid"
    wait "$wpid" || { cat "target/rootfs-$worker-prod.log" >&2; fail "$worker did not exit 0 on SIGTERM"; }
    grep -q "$worker" /proc/"$wpid"/cmdline 2>/dev/null && fail "$worker is still running"
done

# ---- 5. Size.
hello_bytes=$(stat -c %s target/release/examples/hello)
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
say "sizes"
echo "root filesystem (bookworm minbase + ca-certificates, slimmed): $(mb "$base_bytes")"
echo "hello worker binary (release, stripped):                       $(mb "$hello_bytes")"
echo "image size (root filesystem + binary):                         $(mb $((base_bytes + hello_bytes)))"
say "rootfs-test: OK"
