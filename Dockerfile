# syntax=docker/dockerfile:1
# The mercato image: one binary, roles by subcommand (`just image` builds it).
# Built with the toolchain CI tests with; BuildKit caches the registry and the build between
# image builds.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist --bin mercato \
    && cp target/dist/mercato /mercato \
    && mkdir /data

# distroless/cc: glibc, libgcc and CA certificates (for https:// sources and engines over TLS);
# no shell, no package manager. Runs as the image's nonroot user, numeric so that Kubernetes
# can check runAsNonRoot without reading /etc/passwd.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mercato /usr/local/bin/mercato
COPY --from=build /src/examples /examples
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mercato"]
CMD ["up", "--listen=0.0.0.0:8080", "--data-dir=/data"]
