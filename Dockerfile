# moderato: streaming stance and toxicity classifier for reader comments.
#
#   docker build -t moderato .
#   docker run --rm -e MODERATO_BROKERS=kafka:9092 -p 9464:9464 moderato        # serve
#   docker run --rm -i moderato classify --input - < examples/comments.jsonl      # one-off
#
# Stages 1-3 build the release binary, its dependencies cached by cargo-chef; stage 4 is a
# slim Debian with the binary, the shipped default model, the licences and a health probe. Plain Dockerfile syntax (no BuildKit-only features), so
# the classic builder works too.

# ---------------------------------------------------------------------------------------
# Stage 1: the toolchain, with cargo-chef (https://github.com/LukeMathWalker/cargo-chef)
# ---------------------------------------------------------------------------------------
FROM rust:1-bookworm AS chef

# rdkafka-sys builds its bundled librdkafka with ./configure (bash, mklove) and `make libs`
# (C and C++, python3 for the version string and the linker script); no cmake. Features:
# libz (libz-sys finds the system zlib through pkg-config, linked dynamically), ssl
# (openssl-sys links the system OpenSSL 3: TLS, SASL SCRAM), gssapi (sasl2-sys links the
# system Cyrus SASL: Kerberos), curl (curl-sys links the system libcurl: OAUTHBEARER tokens
# from an OIDC endpoint) and zstd (zstd-sys compiles zstd from source and links it
# statically: no package). The rust image has most of this already; naming it keeps the
# build honest if the base image slims down.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        build-essential bash make python3 pkg-config zlib1g-dev libssl-dev libsasl2-dev \
        libcurl4-openssl-dev; \
    rm -rf /var/lib/apt/lists/*; \
    cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# ---------------------------------------------------------------------------------------
# Stage 2: the recipe: what the dependency build depends on (manifests, lock file, targets)
# ---------------------------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------
# Stage 3: build. The dependency layer (with the few-minute librdkafka build in it) is
# rebuilt only when the recipe changes, not when a source file does.
# ---------------------------------------------------------------------------------------
FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --no-default-features --features service \
        --recipe-path recipe.json

# Without the default `embedded-model` feature: the image carries the model as a file
# (MODERATO_MODEL below), which a mounted newer model replaces and `serve` hot-reloads.
# src/cli/demo.rs embeds examples/comments.jsonl with include_str!, so examples/ is a build
# input; .dockerignore keeps tests/, training data and scripts out of the context.
COPY . .
RUN set -eux; \
    cargo build --release --locked --no-default-features --features service; \
    install -D -m 0755 target/release/moderato /out/moderato

# ---------------------------------------------------------------------------------------
# Stage 4: runtime
# ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="moderato" \
      org.opencontainers.image.description="Streaming stance and toxicity classifier for reader comments" \
      org.opencontainers.image.licenses="(MIT OR Apache-2.0) AND LicenseRef-moderato-model-weights"

# Runtime libraries (the binary's NEEDED entries, as scripts/release lists them): libc,
# libgcc_s, libm and libz.so.1 are in bookworm-slim; libssl3 (libssl.so.3, libcrypto.so.3),
# libsasl2-2 (libsasl2.so.2) and libcurl4 (libcurl.so.4) are not. The GSSAPI plugin
# of Cyrus SASL does the Kerberos work of sasl.mechanism=GSSAPI, and ca-certificates is the
# trust store librdkafka verifies a managed cluster's certificate against when
# ssl.ca.location is not set.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        libssl3 libsasl2-2 libsasl2-modules-gssapi-mit libcurl4 ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 moderato; \
    useradd --system --uid 10001 --gid moderato --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin moderato

COPY --from=build /out/moderato /usr/local/bin/moderato
COPY models/default.model /app/models/default.model
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/moderato/
# HTTP health probe for orchestrators (bash /dev/tcp; the image has no curl).
COPY deploy/moderato-healthcheck.sh /usr/local/bin/moderato-healthcheck
RUN chmod 0755 /usr/local/bin/moderato-healthcheck

WORKDIR /app
USER moderato:moderato

# The model is hot-reloaded when this file changes: mount a newer model over it, or point
# MODERATO_MODEL elsewhere.
# The classification routes on MODERATO_HTTP (/v1/classify, the Perspective API) need keys
# on a non-loopback address: mount a key file (one key, or its SHA-256, per line) here, or
# the service refuses to start and says so.
ENV MODERATO_MODEL=/app/models/default.model \
    MODERATO_HTTP=0.0.0.0:9464 \
    MODERATO_API_KEYS=/run/secrets/moderato-api-keys

# Metrics, health, dashboard, /v1/classify and the Perspective API (MODERATO_HTTP).
EXPOSE 9464

ENTRYPOINT ["moderato"]
CMD ["serve"]
