#!/usr/bin/env bash
# Install the Debian packages that are missing (as root). `test` adds the browser-test packages.
set -euo pipefail
pkgs=(postgresql-15 postgresql-15-postgis-3 libgdal32 libgeos-c1v5 libproj25 redis-server gettext python3-venv)
[ "${1:-run}" = test ] && pkgs+=(chromium fonts-wqy-microhei)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
