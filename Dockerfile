# The worker-resolver image: the CLI (`worker-resolver serve | watch | doctor | demo`) and the
# example worker and coordinator used by docker-compose.yml.
#
#   docker build -t worker-resolver .
#   docker run --rm worker-resolver serve --service datafusion-worker --consul http://consul:8500 --listen 0.0.0.0:9464
#
# One stage, dev dependencies kept: the examples run from TypeScript through tsx, exactly as
# `node --import tsx examples/worker.ts` does on a laptop, and prom-client (which /metrics
# needs) is a dev + peer dependency of the package, so `npm ci --omit=dev` would drop it.
FROM node:20-slim

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when the lockfile changes.
# Scripts are skipped here because `prepare` (the build) needs the sources copied below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY examples ./examples
RUN npm run build \
 && chmod +x dist/cli/main.js \
 && ln -s /app/dist/cli/main.js /usr/local/bin/worker-resolver

# Never run as root: the image's `node` user (uid 1000) owns nothing it could break.
USER node

# 9464: the sidecar (`serve`) and the example coordinator; 8080: the example worker.
EXPOSE 9464 8080

ENTRYPOINT ["worker-resolver"]
CMD ["--help"]
