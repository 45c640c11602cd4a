#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then type-checks, lints
# and runs every test. `npm test` runs this; so does CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers and real firewall tools the tests load their output into (Debian packages).
APT_PACKAGES=(
  nftables iptables firewalld ufw graphviz libxml2-utils iproute2 openssl
  chrony openssh-server samba smbclient nginx nmap postgresql chromium tmux time
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages must not start their daemons here: the tests start their own, in namespaces.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "not root: tests that need ${missing[*]} will be skipped" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi

npm run build --silent
npx biome check .
# Node 20's runner takes no glob: name the compiled test files.
node --test --test-reporter=spec --test-concurrency=2 dist/test/*.test.js
