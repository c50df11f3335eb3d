# syntax=docker/dockerfile:1
# meshguard container image: build with the Rust toolchain, run on distroless (glibc, no shell,
# numeric non-root user). tests/dockerfile.sh runs this file's `cargo build` line unchanged.
#   docker build -t REGISTRY/meshguard:TAG .
#
# Base images by digest: each FROM takes its digest from a build argument, empty by default (the
# tag alone). To pin, look the digests up where a registry is reachable and pass them, e.g.
#   docker buildx imagetools inspect docker.io/library/rust:1.95-bookworm      # or: crane digest ...
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#   docker build --build-arg RUST_DIGEST=@sha256:<build digest> \
#     --build-arg RUNTIME_DIGEST=@sha256:<runtime digest> -t REGISTRY/meshguard:TAG .
# (`name:tag@sha256:...` pulls by digest; the tag stays for people reading it.)

ARG RUST_VERSION=1.95
ARG RUST_DIGEST=
ARG RUNTIME_DIGEST=

FROM docker.io/library/rust:${RUST_VERSION}-bookworm${RUST_DIGEST} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin meshguard \
    && install -D -m 0755 target/release/meshguard /out/meshguard

# Debian 12 glibc, matching the build stage; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot${RUNTIME_DIGEST}
LABEL org.opencontainers.image.title="meshguard" \
      org.opencontainers.image.description="Admission webhook that keeps an Istio service mesh zero-trust" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/meshguard /meshguard
USER 65532:65532
# 8443: HTTPS admission webhook; 9090: plain-HTTP /metrics, /healthz, /readyz.
EXPOSE 8443 9090
ENTRYPOINT ["/meshguard"]
CMD ["serve"]
