#!/usr/bin/env bash
# Installs pnpm at the version package.json pins (with npm: corepack's signature check
# fails behind some registry mirrors), then the workspace from the lockfile.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

version=$(node -p 'require("./package.json").packageManager.split("@")[1]')
if [ "$(pnpm --version 2>/dev/null || true)" != "$version" ]; then
  log "pnpm $version into $CI_TOOLS_DIR"
  npm install --prefix "$CI_TOOLS_DIR" --no-audit --no-fund --no-save "pnpm@$version"
fi
log "pnpm install"
pnpm install --frozen-lockfile
