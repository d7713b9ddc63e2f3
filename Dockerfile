# syntax=docker/dockerfile:1
#
# shadowproxy image: a cgo build (pg_query_go embeds the Postgres parser, in
# C) on the Go image, then the binary alone on a slim Debian of the same
# release, so that the glibc it was linked against is there.
#
#   docker build -t shadowproxy --build-arg VERSION=$(git describe --always) .
#   docker run -v $PWD/config.toml:/etc/shadowproxy/config.toml:ro \
#     -e SHADOWPROXY_OLD=postgres://... -p 6432:6432 -p 9187:9187 shadowproxy \
#     --listen 0.0.0.0:6432 --admin 0.0.0.0:9187
#
# Arguments after the image name are appended to the entrypoint, i.e. they
# are `serve` flags and override the configuration file.

FROM golang:1.26-bookworm AS build
# The image pins its own Go (GOTOOLCHAIN=local); allow fetching the exact
# toolchain go.mod asks for if the image's patch release is older.
ENV GOTOOLCHAIN=auto CGO_ENABLED=1
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/shadowproxy ./cmd/shadowproxy

FROM debian:bookworm-slim
# ca-certificates: TLS to managed databases (sslmode=verify-full with the
# system roots).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin shadowproxy \
    && mkdir -p /etc/shadowproxy /var/lib/shadowproxy/reports \
    && chown shadowproxy:shadowproxy /var/lib/shadowproxy/reports
COPY --from=build /out/shadowproxy /usr/local/bin/shadowproxy
USER shadowproxy
WORKDIR /var/lib/shadowproxy
# 6432: clients (Postgres wire protocol); 9187: admin HTTP (/metrics,
# /status, /healthz). Both must be bound to 0.0.0.0 to be reachable from
# outside the container: --listen / --admin, or the configuration file.
EXPOSE 6432 9187
VOLUME /var/lib/shadowproxy/reports
ENTRYPOINT ["shadowproxy", "serve", "--config", "/etc/shadowproxy/config.toml"]
