# syntax=docker/dockerfile:1
# Build stage: full install, type-check and bundle, then one start with placeholder settings that
# writes V8's code cache (scripts/build-code-cache.ts). The same base image in both stages: V8 uses
# the cache only with the Node version and the V8 flags it was written with (those of CMD below).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/build-code-cache.ts scripts/start-command.ts ./scripts/
RUN npm run build

# Runtime stage: production dependencies and dist/ only, as the unprivileged node user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node as PID 1 receives SIGTERM directly, so the drain runs on docker stop / pod deletion. The
# flags are those of `npm start` (test/build.test.ts checks it); the README says why.
CMD ["node", "--max-semi-space-size=8", "--max-old-space-size=256", "dist/server.js"]
