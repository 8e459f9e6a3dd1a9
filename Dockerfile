# The mercato image: one binary, roles by subcommand.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --profile dist --bin mercato

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 mercato && mkdir /data && chown mercato /data
COPY --from=build /src/target/dist/mercato /usr/local/bin/mercato
COPY --from=build /src/examples /examples
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mercato"]
CMD ["up", "--listen=0.0.0.0:8080", "--data-dir=/data"]
