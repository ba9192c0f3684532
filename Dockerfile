# syntax=docker/dockerfile:1
# Doppel node image. Two stages:
#   build    node:20-bookworm (has python3, make and g++ for better-sqlite3's native module):
#            npm ci, npm run build (TypeScript -> dist/), npm prune --omit=dev
#   runtime  node:20-bookworm-slim with only package.json, package-lock.json, the production
#            node_modules, bin/, dist/ and proto/; runs as uid 10001; data in /var/lib/doppel.
#
#   docker build -t doppel .
#   docker run --rm -p 127.0.0.1:50051:50051 doppel start --insecure      # a local try-out
#
# The image listens on 0.0.0.0:50051 (gRPC) and 0.0.0.0:9464 (metrics). Binding a non-loopback
# address needs TLS and API keys, or the explicit --insecure flag: see docs/security.md and
# docs/deploy.md.

FROM node:20-bookworm AS build
WORKDIR /src
ENV CI=true npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
LABEL org.opencontainers.image.title="doppel" \
      org.opencontainers.image.description="Doppel: actor-based distributed digital twin runtime" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    DOPPEL_DATA_DIR=/var/lib/doppel \
    DOPPEL_LISTEN=0.0.0.0:50051 \
    DOPPEL_METRICS=0.0.0.0:9464
RUN groupadd --system --gid 10001 doppel \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/doppel --no-create-home \
      --shell /usr/sbin/nologin doppel \
 && mkdir -p /var/lib/doppel \
 && chown 10001:10001 /var/lib/doppel \
 && chmod 0750 /var/lib/doppel
WORKDIR /app
# Owned by root and read-only to the node's user: the node writes only to /var/lib/doppel (and /tmp).
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
USER 10001:10001
VOLUME ["/var/lib/doppel"]
EXPOSE 50051 9464
# The node drains on SIGTERM: finishes turns, persists and snapshots, releases its shard leases.
# Give it time (docker stop -t 60, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# gRPC health (grpc.health.v1): exits 0 only when the node says SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "/app/bin/doppel.js", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["node", "/app/bin/doppel.js"]
CMD ["start"]
