# The images (operator, api, sweeper, sidecar, and the demo backend) from one recipe: a target per component, each
# holding only that component's bundle (scripts/bundle.mjs: its code and production dependencies as
# platform-independent JavaScript) on a Node.js 24 base. Why bundles: docs/adr/0008-images.md.
#
#   npm ci && npm run bundle                                   # dist/images/<component>/
#   docker build --target api -t spawner-api .                 # one image; or, for all four with
#   bash scripts/images.sh build                               # buildah, cached by content
#
# The context is the repository root; .dockerignore sends only dist/images/. No RUN step: the same
# bundle goes into every platform (docker buildx --platform linux/amd64,linux/arm64, no emulation).
# BASE: any image with node >= 24 on PATH; the default is the public Node.js image.
ARG BASE=docker.io/library/node:24-bookworm-slim

FROM ${BASE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot; the uid the chart runs every component as.
USER 65532:65532

FROM runtime AS operator
COPY dist/images/operator/ /app/
EXPOSE 8082
ENTRYPOINT ["node"]
CMD ["dist/operator/src/main.js"]

# The REST API and the entry point (one process, two ports). Entrypoint and script apart, so a Pod
# can run another script with `args` (the chart's helm test: dist/api/client/smoke-test.js).
FROM runtime AS api
COPY dist/images/api/ /app/
EXPOSE 8080 8081
ENTRYPOINT ["node"]
CMD ["dist/api/src/main.js"]

# A small young generation: one sweeper per node follows every sidecar there, and its peak RSS
# while sweeping 1,000 backends drops from 109 to 90 MB at no measurable CPU cost (bench/,
# sweeper-scale --sweeper-node-args=--max-semi-space-size=2).
FROM runtime AS sweeper
COPY dist/images/sweeper/ /app/
EXPOSE 8083
ENTRYPOINT ["node"]
CMD ["--max-semi-space-size=2", "dist/sweeper/src/main.js"]

# Injected into every backend Pod; the operator appends --serve-port and --upstream-port.
FROM runtime AS sidecar
COPY dist/images/sidecar/ /app/
EXPOSE 9090 9091
ENTRYPOINT ["node", "dist/sidecar/src/main.js"]

# The example backend (examples/demo-backend), which the chart's helm test spawns; listens on $PORT.
FROM runtime AS demo-backend
COPY dist/images/demo-backend/ /app/
EXPOSE 8080
ENTRYPOINT ["node"]
CMD ["dist/examples/demo-backend/src/main.js"]
