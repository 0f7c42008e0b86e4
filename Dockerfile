# syntax=docker/dockerfile:1
# Build: docker build -t voipbridge .
# Run:   docker run -p 8080:8080 -v voipbridge-data:/data \
#          -e ROBIN_API_KEY=... -e WEBHOOK_TOKEN=... voipbridge
#
# BuildKit (the default builder of current Docker) keeps the Go module and
# build caches between builds, so a code change recompiles the packages that
# changed, not nats-server and the other dependencies. Cross-builds compile on
# the builder's own platform (docker buildx build --platform linux/arm64 .).
# Release images: GoReleaser builds the binaries and passes BINARY=release,
# so this file only copies them (see .goreleaser.yaml).

ARG BINARY=source

# CA certificates for HTTPS to the helpdesk and the PBX APIs, and the
# non-root user. Architecture-independent: always on the builder's platform.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS base
RUN mkdir -p /out/data \
 && echo 'voipbridge:x:65532:65532:voipbridge:/data:/sbin/nologin' > /out/passwd \
 && echo 'voipbridge:x:65532:' > /out/group

FROM base AS binary-source
WORKDIR /src
RUN --mount=type=bind,source=go.mod,target=go.mod \
    --mount=type=bind,source=go.sum,target=go.sum \
    --mount=type=cache,target=/go/pkg/mod \
    go mod download
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=bind,target=. \
    --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X github.com/voipbridge/voipbridge/bridge.Version=${VERSION}" \
      -o /out/voipbridge ./cmd/voipbridge

# GoReleaser's build context holds linux/amd64/voipbridge and linux/arm64/voipbridge.
FROM scratch AS binary-release
ARG TARGETPLATFORM
COPY $TARGETPLATFORM/voipbridge /out/voipbridge

FROM binary-${BINARY} AS binary

# A static binary (with its own time zone data) needs nothing but the CA
# certificates and a user.
FROM scratch
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="voipbridge" \
      org.opencontainers.image.description="Tells CM.com Agent Inbox (formerly ROBIN) about the calls on a phone system" \
      org.opencontainers.image.source="https://github.com/voipbridge/voipbridge" \
      org.opencontainers.image.documentation="https://github.com/voipbridge/voipbridge#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=base /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=base /out/passwd /etc/passwd
COPY --from=base /out/group /etc/group
COPY --from=base --chown=65532:65532 /out/data /data
COPY --from=binary /out/voipbridge /usr/local/bin/voipbridge
ENV DATA_DIR=/data HTTP_ADDR=:8080 LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080 5070/udp 5070/tcp
USER 65532:65532
# No curl in the image: the binary asks its own /healthz on HTTP_ADDR.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/voipbridge", "healthcheck", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/voipbridge"]
CMD ["serve"]
