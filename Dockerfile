# syntax=docker/dockerfile:1
#
# The auth service as a container: a build stage that compiles TypeScript and keeps only the
# production dependencies, and a runtime stage with node_modules + dist (which holds the SQL
# migrations) and nothing else. No compilers reach the runtime image.
#
#   docker build -t auth-service .
#   docker run -d -p 127.0.0.1:3000:3000 -v auth-data:/data auth-service
#
# See docs/operations.md for configuration, key protection, backups and the admin CLI.

FROM node:24-slim AS build
WORKDIR /app
# The native modules need no compiler: better-sqlite3 13 ships prebuilt binaries inside its npm
# package and @node-rs/argon2 gets its binary as an npm optional dependency. Install scripts
# are skipped on purpose: from the lockfile alone npm cannot see better-sqlite3's
# `"gypfile": false` and would run `node-gyp rebuild` (python3, make, g++, a minute of
# compiling) although the prebuilt binary is there; no other production dependency has an
# install script. The require() check below proves the binary loads. Should a native module
# ever have to compile, install python3 make g++ in this stage only and drop --ignore-scripts.
# The `node` dev dependency (Node 24 for developers whose system Node is older) is not set up
# with --ignore-scripts; its dangling bin link is removed so that the build uses the image's node,
# and `npm prune --omit=dev` below keeps it out of the runtime image.
COPY package.json package-lock.json ./
# The workspaces (packages/verifier, packages/client): npm ci needs their manifests.
COPY packages/verifier/package.json packages/verifier/
COPY packages/client/package.json packages/client/
RUN npm ci --ignore-scripts --no-audit --no-fund && rm -f node_modules/.bin/node
# The sources the build needs (.dockerignore keeps tests, docs, local data and .git out).
COPY . .
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 # better-sqlite3 carries its C sources and the prebuilt binaries of every platform; the
 # runtime needs only this platform's binary.
 && node -e "const fs=require('node:fs'),p='node_modules/better-sqlite3/';for(const d of ['deps','src'])fs.rmSync(p+d,{recursive:true,force:true});const keep=process.platform+'-'+process.arch+'.node';for(const f of fs.readdirSync(p+'prebuilds'))if(f!==keep)fs.rmSync(p+'prebuilds/'+f)" \
 && node -e "require('better-sqlite3')(':memory:').prepare('select 1').get()"

FROM node:24-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=file:/data/auth.db
WORKDIR /app
# Application files belong to root and are read-only for the service user; only /data is writable.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The verifier package, which node_modules/@auth-service/verifier links to: a service started from
# this image (docs/compose-example/protected.mjs) imports it as '@auth-service/verifier'.
COPY --from=build /app/packages/verifier/package.json ./packages/verifier/package.json
COPY --from=build /app/packages/verifier/dist ./packages/verifier/dist
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 3000
# No curl in the slim image: node's fetch asks /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node is PID 1 and handles SIGTERM itself (src/server.ts: close-with-grace), so `docker stop`
# drains in-flight requests, closes the database and exits 0.
# The same V8 flag as `npm start`: a 4 MB young generation keeps ~40 MB off the RSS under load.
CMD ["node", "--max-semi-space-size=4", "dist/src/server.js"]
