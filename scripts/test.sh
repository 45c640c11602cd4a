#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then type-checks, lints
# and runs every test. `npm test` runs this; so does CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npx tsc -p tsconfig.json
npx biome check .
node --test --test-reporter=spec --test-concurrency=2 'dist/test/**/*.test.js'
