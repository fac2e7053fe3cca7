# syntax=docker/dockerfile:1
# Portcullis: multi-stage build → small non-root runtime image.
#   docker build -t portcullis .
#   docker run --rm -p 8443:8443 -v "$PWD/portcullis.toml:/etc/portcullis/portcullis.toml:ro" \
#     -v "$PWD/tls:/etc/portcullis/tls:ro" portcullis        (or deploy/compose/)
# The config is read from /etc/portcullis/portcullis.toml (override with PORTCULLIS_CONFIG);
# relative paths in it (certificates, secret files) resolve against its directory.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && strip --strip-all -o /portcullis target/release/portcullis

# glibc + CA certificates (for https upstreams), no shell, runs as uid 65532.
# scripts/image builds the same image offline with buildah (no HEALTHCHECK: OCI format).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /portcullis /usr/local/bin/portcullis
ENV PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml
# nonroot:nonroot by number: Kubernetes' runAsNonRoot can verify only a numeric user.
USER 65532:65532
EXPOSE 8443
# Drains in-flight requests (server.drain_timeout), then exits.
STOPSIGNAL SIGTERM
# No shell or curl in the image: the binary probes itself (GET /healthz on the configured
# listen address, over TLS pinned to the configured certificate). Orchestrators may instead
# probe /healthz (liveness) and /readyz (readiness) over HTTPS on 8443.
HEALTHCHECK --interval=15s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/portcullis", "health"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
