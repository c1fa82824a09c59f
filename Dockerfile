# streamrpc: one static binary in a distroless image; the same image runs the
# edge (the default command) and the sidecar consumer (`consumer`).
#
#   docker build -t streamrpc .
#   docker network create srpc
#   docker run -d --rm --name redis --network srpc redis:7-alpine
#   docker run --rm --network srpc -e REDIS_URL=redis://redis:6379/0 -e STREAMRPC_AUTH=none \
#     -p 127.0.0.1:8080:8080 streamrpc
#   docker run --rm --network srpc -e REDIS_URL=redis://redis:6379/0 -e STREAMRPC_HANDLER=app \
#     -e STREAMRPC_UPSTREAM_URL=http://127.0.0.1:3000 -e STREAMRPC_METHODS=greet,add streamrpc consumer
#
# The edge refuses to start without authentication: STREAMRPC_AUTH=none runs this demo open on
# purpose, published on loopback only. Anywhere else set STREAMRPC_API_KEYS (`docker run --rm
# streamrpc hash-key` prints a key and its entry) or a JWT key instead (README "Security model").
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# go build downloads the modules the binary needs through the Go module proxy,
# or takes them from vendor/ if the context has one (`go mod vendor` first for
# a build without network; vendor/ is not committed).
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/streamrpc ./cmd/streamrpc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/streamrpc /streamrpc
USER 65532:65532
EXPOSE 8080 8081
# Liveness: GET /healthz of the edge (or of the sidecar's STREAMRPC_HEALTH_ADDR), through the
# binary itself since the image has no shell. `healthcheck --ready` checks /readyz instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/streamrpc", "healthcheck"]
ENTRYPOINT ["/streamrpc"]
CMD ["edge"]
