# syntax=docker/dockerfile:1
# Build: docker build -t voipbridge .
# Run:   docker run -p 8080:8080 -v voipbridge-data:/data \
#          -e ROBIN_API_KEY=... -e WEBHOOK_TOKEN=... voipbridge
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/voipbridge/voipbridge/bridge.Version=${VERSION}" \
      -o /out/voipbridge ./cmd/voipbridge \
 && mkdir -p /out/data \
 && echo 'voipbridge:x:65532:65532:voipbridge:/data:/sbin/nologin' > /out/passwd

# A static binary (with its own time zone data) needs nothing but CA
# certificates for HTTPS to the helpdesk and the PBX APIs.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/voipbridge /usr/local/bin/voipbridge
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data HTTP_ADDR=:8080 LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080 5070/udp 5070/tcp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/voipbridge"]
CMD ["serve"]
