#!/usr/bin/env bash
# Build minimal Debian images that boot systemd, for molecule, the demo and the tests
# of a first run. No container registry is needed: mmdebstrap fetches packages from
# the Debian mirror (apt resolves them, dpkg installs them in one pass: about half of
# debootstrap's time and CPU here; docs/performance.md, "Base images from
# mmdebstrap") and `docker import` turns the tree into an image.
#
#   molecule/scripts/build-image.sh bookworm   -> flaskdeploy/debian:12, flaskdeploy/debian:12-bare
#   molecule/scripts/build-image.sh trixie     -> flaskdeploy/debian:13, flaskdeploy/debian:13-bare
#
# :N       what a minimal server image has: systemd, python3 (without python3-apt:
#          site.yml installs that), sudo, ca-certificates. The scenarios use it.
# :N-bare  the same without python3 at all, as a netinst with only an SSH server
#          (the tests of a first run install openssh-server into it).
#
# Does nothing when both images exist and were built by this version of the script
# (a label holds its hash; FORCE=1 rebuilds).
set -euo pipefail

suite=${1:?usage: build-image.sh bookworm|trixie}
case "$suite" in
  bookworm) tag=12 ;;
  trixie) tag=13 ;;
  *) echo "unknown suite: $suite" >&2; exit 2 ;;
esac
image="flaskdeploy/debian:${tag}"
bare="flaskdeploy/debian:${tag}-bare"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
build=$(sha256sum "$0" | cut -c1-16)

built() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "flaskdeploy.build" }}' "$1" 2>/dev/null)" = "$build" ]
}
if [ "${FORCE:-0}" != 1 ] && built "$image" && built "$bare"; then
  echo "images $image and $bare exist"
  exit 0
fi

# mmdebstrap 1.1 or newer (Debian 12, Ubuntu 24.04): from 1.1 on, its merged-usr
# hook merges /usr as debootstrap does.
version=$(mmdebstrap --version | awk '{print $2}')
if ! printf '1.1\n%s\n' "$version" | sort -C -V; then
  echo "mmdebstrap $version is too old: 1.1 or newer is needed (Debian 12, Ubuntu 24.04)" >&2
  exit 1
fi
# Debian's own keys, also on an Ubuntu machine (setup.sh installs them).
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

root=$(mktemp -d "/tmp/rootfs-${suite}.XXXXXX")
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT

# minbase: the essential and required packages and apt, as debootstrap's minbase
# (the same packages on Debian 12; on 13, adduser is not there: nothing needs it).
# /usr merged as debootstrap does it (the hook installs usr-is-merged: without it,
# apt would pick usrmerge, and perl with it); apt's package lists kept, as
# debootstrap keeps them. Unlike debootstrap, apt marks the dependencies as
# installed automatically (/var/lib/apt/extended_states), as on a server that
# Debian's installer installed.
log=/tmp/mmdebstrap-${suite}.log
mmdebstrap --mode=root --variant=minbase --skip=cleanup/apt/lists --keyring="$keyring" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,iproute2,procps \
  "$suite" "$root" "$mirror" >"$log" 2>&1 \
  || { tail -n 30 "$log" >&2; exit 1; }

cat >"$root/etc/apt/sources.list" <<SRC
deb ${mirror} ${suite} main
deb ${mirror} ${suite}-updates main
SRC
# systemd generates a machine id on first boot; units a container has no use for are masked.
: >"$root/etc/machine-id"
for unit in getty.target console-getty.service systemd-remount-fs.service \
            systemd-udevd.service systemd-udev-trigger.service sys-kernel-debug.mount \
            systemd-logind.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

import() {
  chroot "$root" apt-get clean
  rm -f "$root"/var/cache/apt/*.bin
  tar -C "$root" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    --change "LABEL flaskdeploy.build=$build" \
    - "$1" >/dev/null
  echo "built $1"
}

# python3-apt is not there: minbase does not have it, and many cloud images neither.
if chroot "$root" dpkg-query -W python3-apt >/dev/null 2>&1; then
  echo "python3-apt is in the $suite image" >&2; exit 1
fi
import "$image"

# No Python at all: purge the interpreter packages (python3 and python3.X go with them).
minimal=$(chroot "$root" dpkg-query -W -f '${Package}\n' 'python3*-minimal')
# shellcheck disable=SC2086  # one package name a word
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $minimal \
  >>"$log" 2>&1
if chroot "$root" sh -c 'ls /usr/bin/python3*' >/dev/null 2>&1; then
  echo "python3 is still in the $suite bare image" >&2; exit 1
fi
import "$bare"
