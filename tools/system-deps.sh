#!/usr/bin/env bash
# `make system-deps`: the system components some tests need, from the OS package manager.
# Installs what is missing when it can (root on Debian/Ubuntu); otherwise prints one loud
# line per component and exits 0, so the tests that need it skip (they say why, too).
# Usage: tools/system-deps.sh COMPONENT...   (postgresql, chromium)
set -euo pipefail

have() {
  case "$1" in
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ;;
    chromium) [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] ;;
    *) echo "system-deps: unknown component $1" >&2; return 2 ;;
  esac
}
packages() {
  case "$1" in
    postgresql) echo postgresql ;;
    chromium) echo chromium chromium-driver ;;
  esac
}

missing=()
for c in "$@"; do have "$c" || missing+=("$c"); done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=$(for c in "${missing[@]}"; do packages "$c"; done | xargs)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing $pkgs (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  if apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; then
    exit 0
  fi
  echo "!!! system-deps: apt-get could not install $pkgs; the tests that need them will be SKIPPED" >&2
  exit 0
fi
echo "!!! system-deps: ${missing[*]} missing and cannot be installed here (needs root and apt-get);" \
  "install $pkgs yourself, or the tests that need them will be SKIPPED" >&2
exit 0
