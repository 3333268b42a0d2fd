# syntax=docker/dockerfile:1
# A RunPod worker image for this repository's examples: build in a full Rust image, ship only
# the binary on Debian slim with CA certificates, as a non-root user. For your own project,
# copy docker/Dockerfile.template (CPU) or docker/Dockerfile.cuda (GPU) instead; see README,
# "Deploying to RunPod".
#
#   docker build -t my-registry/hello-worker:1 --build-arg WORKER=hello .
#   docker build -t my-registry/thumbnail:1 --build-arg WORKER=thumbnail --build-arg FEATURES=thumbnail .
#   docker run --rm my-registry/hello-worker:1 --test_input '{"input": {}}'
#
# scripts/rootfs-test.sh builds the runtime stage's root filesystem without Docker and runs the
# workers in it; keep the two in step.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- 1. cargo-chef: a recipe of the dependency graph, so dependencies build in their own layer.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- 2. Build: dependencies first (this layer is reused until Cargo.toml/Cargo.lock change),
#         then the worker itself from the sources.
FROM chef AS build
# hello, echo, model or thumbnail (thumbnail needs FEATURES=thumbnail).
ARG WORKER=hello
ARG FEATURES=""
COPY --from=planner /src/recipe.json recipe.json
# Examples build with the dev-dependencies, hence --examples.
RUN cargo chef cook --release --locked --examples ${FEATURES:+--features "$FEATURES"} --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --example "${WORKER}" ${FEATURES:+--features "$FEATURES"} \
    && install -D "target/release/examples/${WORKER}" /out/worker

# ---- 3. Runtime: Debian slim + CA certificates (TLS to RunPod's API and to S3), a non-root
#         user, the binary. About 90 MB uncompressed for hello (README, "Image size").
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*.log \
    && groupadd --gid 10001 worker \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin worker
COPY --from=build /out/worker /usr/local/bin/worker
# Model files: bake them into the image (fast cold starts, the image carries them) …
#   COPY examples/model/lexicon.tsv /models/lexicon.tsv
#   ENV LEXICON_PATH=/models/lexicon.tsv
# … or keep them on a RunPod network volume, mounted at /runpod-volume in serverless workers,
# and point the path there in the endpoint's environment: LEXICON_PATH=/runpod-volume/lexicon.tsv
# glibc's per-thread caches keep freed 128 B–1 KiB chunks that a million jobs spread over
# many threads pin, so resident memory creeps up about 1 kB per 1,000 jobs; caching only small
# chunks keeps it flat at no measured cost (BENCHMARKS.md, "The release soak").
ENV GLIBC_TUNABLES=glibc.malloc.tcache_max=128
WORKDIR /app
USER worker
ENTRYPOINT ["/usr/local/bin/worker"]
