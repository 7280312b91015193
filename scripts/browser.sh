#!/usr/bin/env bash
# The web UI in a real browser: headless Chromium through chromedriver
# against a real `mcrsrv server` and `mcr-web server` (TLS 1.3, a CA made
# for the run), after skopeo pushed real images. The checks are in
# crates/mcr-cli/tests/browser.rs; screenshots of every page land in
# $CARGO_TARGET_DIR/browser-screenshots for a person to look at.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[browser] %s\n' "$*"; }

# Debian's packages: chromium, chromium-driver (chromedriver), skopeo,
# curl, openssl.
missing=()
for pair in chromium:chromium chromedriver:chromium-driver skopeo:skopeo curl:curl openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
log "$(chromium --version 2>/dev/null || echo 'chromium: version unknown'); $(chromedriver --version | head -1)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
export MCR_SCREENSHOTS="${MCR_SCREENSHOTS:-$CARGO_TARGET_DIR/browser-screenshots}"
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
rm -rf "$MCR_SCREENSHOTS"
cargo test -p mcr-cli --features browser-tests --test browser
log "screenshots: $MCR_SCREENSHOTS"
