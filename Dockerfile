# The worker-resolver image: the CLI (`worker-resolver serve | watch | doctor | demo | dev-server`)
# and the example worker and coordinator used by docker-compose.yml.
#
#   docker build -t worker-resolver .
#   docker run --rm worker-resolver serve --service datafusion-worker --consul http://consul:8500 --listen 0.0.0.0:9464
#
# Two stages. `build` has every dev dependency (TypeScript) and compiles the library, the CLI
# and the two example entry points to JavaScript. The runtime stage has only the production
# dependencies (`npm ci --omit=dev`: prom-client, the OpenTelemetry SDK, consul and
# dns-packet are all regular dependencies) and the compiled output: no TypeScript, no tsx, no
# linters — a fraction of the build stage's node_modules.

FROM node:20-slim AS build
WORKDIR /app
# npm's "new version available" notice is noise in a build log (and checks the registry for it).
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
# Dependencies first, in their own layer: rebuilt only when the lockfile changes. Scripts are
# skipped because `prepare` (the build) needs the sources copied below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY examples ./examples
RUN npm run build \
 && npx tsc examples/worker.ts examples/coordinator.ts --outDir dist/examples-bin --rootDir examples \
      --module nodenext --moduleResolution nodenext --target es2022 --strict --skipLibCheck

FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json ./
# npm's download cache goes to a directory removed in the same layer (`npm cache clean --force`
# would warn that the cache is self-healing): the image keeps node_modules only.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --cache /tmp/npm-cache && rm -rf /tmp/npm-cache
COPY --from=build /app/dist ./dist
RUN chmod +x dist/cli/main.js && ln -s /app/dist/cli/main.js /usr/local/bin/worker-resolver

# Never run as root: the image's `node` user (uid 1000) owns nothing it could break.
USER node

# 9464: the sidecar (`serve`) and the example coordinator; 8080: the example worker.
EXPOSE 9464 8080

ENTRYPOINT ["worker-resolver"]
CMD ["--help"]
