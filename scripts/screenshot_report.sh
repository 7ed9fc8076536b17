#!/usr/bin/env bash
# Render a release's report.html in headless Chromium, the way a reviewer's browser shows it:
#   bash scripts/screenshot_report.sh runs/fashion-family [out.png]
# Needs Debian's chromium (apt-get install chromium). Look at the PNG: every chart drawn, status
# badges readable (text, not emoji), no empty boxes where a font is missing.
set -euo pipefail
release="${1:?usage: screenshot_report.sh RELEASE_DIR [OUT.png]}"
out="${2:-$release/report.png}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "error: chromium not found; apt-get install chromium" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -r -- "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1280,4200 \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$release/report.html")" 2>/dev/null
echo "$out"
