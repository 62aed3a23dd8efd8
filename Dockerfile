# Release image for one Parlor pod. Build: docker build -t parlor .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# No default features: the load generator (`parlor bench`) stays out of the image.
RUN cargo build --release --locked --no-default-features --bin parlor

FROM debian:bookworm-slim
# ca-certificates: Sentry is reached over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data parlor \
 && mkdir -p /data && chown parlor /data
COPY --from=build /src/target/release/parlor /usr/local/bin/parlor
USER parlor
WORKDIR /data
ENV PARLOR_SERVER__DATA_DIR=/data
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/parlor"]
CMD ["serve"]
