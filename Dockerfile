# keygate in a container: the binary and the libraries it loads, nothing
# else (no shell, no package manager), run as an unprivileged user, with
# its SQLite database and bundles in the /data volume and its settings in
# KEYGATE_* variables (docs/operations.md, "A container"):
#   docker build -t keygate .
#   docker run -d -p 8080:8080 -v keygate-data:/data \
#     -e KEYGATE_BOOTSTRAP_EMAIL=you@example.com keygate
# CI builds the runtime stage from the binary it tested
# (`--build-context build=DIR`, DIR made by deploy/container/rootfs.sh) and
# runs it (.ci/container).

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keygate \
 && sh deploy/container/rootfs.sh target/release/keygate /

FROM scratch
COPY --from=build /image /
USER 10001:10001
WORKDIR /data
VOLUME /data
ENV KEYGATE_LISTEN=0.0.0.0:8080 \
    KEYGATE_DATABASE_URL=sqlite:///data/keygate.db
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["/usr/local/bin/keygate", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve"]
