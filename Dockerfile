# syntax=docker/dockerfile:1
# Release image of the `parlor` binary. Build (BuildKit): docker build -t parlor:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Manifests first, so the fetched crates stay cached in this layer until a manifest or
# Cargo.lock changes. Cargo reads the workspace only if every target exists: stubs stand in.
COPY Cargo.toml Cargo.lock ./
COPY crates/parlor-bench/Cargo.toml crates/parlor-bench/
COPY crates/parlor-client/Cargo.toml crates/parlor-client/
COPY crates/parlor-cluster/Cargo.toml crates/parlor-cluster/
COPY crates/parlor-config/Cargo.toml crates/parlor-config/
COPY crates/parlor-core/Cargo.toml crates/parlor-core/
COPY crates/parlor-games/Cargo.toml crates/parlor-games/
COPY crates/parlor-protocol/Cargo.toml crates/parlor-protocol/
COPY crates/parlor-server/Cargo.toml crates/parlor-server/
COPY crates/parlor-store/Cargo.toml crates/parlor-store/
COPY crates/parlor-testkit/Cargo.toml crates/parlor-testkit/
RUN for c in crates/*/; do mkdir -p "${c}src" && touch "${c}src/lib.rs"; done \
 && mkdir -p src benches tests \
 && echo 'fn main() {}' > src/main.rs \
 && touch benches/hot_path.rs benches/store.rs benches/matchmaker.rs tests/integration.rs \
 && cargo fetch --locked

# The sources; parlor-protocol's build script compiles proto/. The stubs of benches/ and
# tests/ stay: only the binary is built.
COPY proto proto
COPY src src
COPY crates crates
# No default features: the load generator (`parlor bench`) stays out of the image. The
# target cache mount keeps compiled dependencies between builds on one builder.
RUN --mount=type=cache,target=/src/target,id=parlor-target,sharing=locked \
    cargo build --release --locked --no-default-features --bin parlor \
 && install -m 0755 target/release/parlor /usr/local/bin/parlor

FROM debian:bookworm-slim
# ca-certificates: Sentry, MongoDB and Redis may be reached over TLS. DL3008 (pin apt
# versions) is ignored on purpose: ca-certificates must follow bookworm's security updates,
# and a pinned version vanishes from the archive once one lands.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 parlor \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin parlor \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /usr/local/bin/parlor /usr/local/bin/parlor
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /data
ENV PARLOR_SERVER__DATA_DIR=/data
EXPOSE 8080 9090
# The image has no curl: `parlor health` asks the admin port's /health/live.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/parlor", "health"]
ENTRYPOINT ["/usr/local/bin/parlor"]
CMD ["serve"]
