#!/bin/sh
# Installs the Debian packages named on the command line that are missing.
# Without root it only reports them, so the build fails with a clear message.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "cogos: missing Debian packages:$missing (run: sudo apt-get install$missing)" >&2
  exit 1
fi
echo "cogos: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq $missing >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $missing >/dev/null
} || { echo "cogos: could not install$missing" >&2; exit 1; }
