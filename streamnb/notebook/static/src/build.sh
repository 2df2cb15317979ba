#!/usr/bin/env bash
# Rebuild ../chart.js: chart_widget.js bundled with vega, vega-lite and
# vega-embed (versions pinned in package.json) into one minified ES module,
# so the chart renders with no network. Needs node and npm; run it after
# changing chart_widget.js or package.json, and commit ../chart.js.
#   bash streamnb/notebook/static/src/build.sh
set -euo pipefail
SRC="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$SRC/package.json" "$SRC/chart_widget.js" "$WORK/"
[ -f "$SRC/package-lock.json" ] && cp "$SRC/package-lock.json" "$WORK/"
cd "$WORK"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --silent
else
  npm install --no-audit --no-fund --silent
  cp package-lock.json "$SRC/"
fi
npx esbuild chart_widget.js --bundle --format=esm --minify --target=es2020 \
  --legal-comments=none --outfile="$SRC/../chart.js"
{
  echo "== bundled versions"
  for p in vega vega-lite vega-embed; do
    node -e "const p=require('./node_modules/$p/package.json');console.log(p.name, p.version, p.license)"
  done
} >&2
ls -l "$SRC/../chart.js" >&2
