# syntax=docker/dockerfile:1
# storage-admission image: a static-enough Rust binary on distroless (glibc, no shell).
#
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t storage-admission:dev .
#
# .git is not sent to the build (.dockerignore), so without GIT_COMMIT `--version` says
# "unknown" for the commit.

FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependency layer: build every dependency against stub sources, so this layer is reused
# until Cargo.toml, Cargo.lock or the benches change. Cargo refuses a manifest whose explicit
# [[bench]] targets have no file, even for `cargo build`, so the (small) bench sources come
# along; a new explicit [[test]] or [[example]] target needs the same. tests/dockerfile.rs
# replays this layer's commands and fails if the manifest does not load.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/.fingerprint/storage-admission-* \
           target/release/deps/storage_admission-* target/release/deps/libstorage_admission-* \
           target/release/storage-admission

# The crate itself. The commit is passed in after the dependency layer, so a new commit does
# not rebuild the dependencies.
COPY . .
ARG GIT_COMMIT=""
RUN if [ -n "$GIT_COMMIT" ]; then export STORAGE_ADMISSION_GIT_COMMIT="$GIT_COMMIT"; fi \
 && cargo build --release --locked \
 && ./target/release/storage-admission --version

FROM gcr.io/distroless/cc-debian12:nonroot
ARG GIT_COMMIT=""
LABEL org.opencontainers.image.title="storage-admission" \
      org.opencontainers.image.description="Admission webhook and controller for safe CSI snapshot and topology-aware storage workflows" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
COPY --from=builder /build/target/release/storage-admission /storage-admission
USER 65532:65532
# 8443: webhooks (HTTPS); 8080: /livez, /readyz, /metrics (plain HTTP).
EXPOSE 8443 8080
ENTRYPOINT ["/storage-admission"]
CMD ["run"]
