#!/usr/bin/env bash
# Debian packages that parts of tinyadapt need beyond pip and gcc:
#   gcc-arm-none-eabi, libnewlib-arm-none-eabi   ARM natmods (armv6m RP2040, armv7m, armv7emsp)
#   gcc-xtensa-lx106, picolibc-xtensa-lx106-elf  Xtensa objects (ESP8266 core) for the linker tests
#   dataset-fashion-mnist                        Fashion-MNIST 28x28 images (tinyadapt_host.datasets; converter tests)
# As root (CI) they are installed; otherwise the command is printed and the parts that
# need them report that they did not run.
set -u
PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-xtensa-lx106 picolibc-xtensa-lx106-elf dataset-fashion-mnist"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system_deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || { echo "system_deps: apt-get install$missing failed" >&2; exit 1; }
else
  echo "system_deps: missing Debian packages:$missing"
  echo "system_deps: install them with: sudo apt-get install$missing"
  echo "system_deps: until then ARM builds, the Xtensa linker checks and the Fashion-MNIST tests do not run (they report it)."
fi
