#!/usr/bin/env bash
# Build a minimal Debian image that boots systemd, for molecule and the demo.
# No container registry is needed: debootstrap fetches packages from the Debian
# mirror and `docker import` turns the tree into an image.
#
#   molecule/scripts/build-image.sh bookworm   -> flaskdeploy/debian:12
#   molecule/scripts/build-image.sh trixie     -> flaskdeploy/debian:13
#
# Does nothing when the image already exists (FORCE=1 rebuilds).
set -euo pipefail

suite=${1:?usage: build-image.sh bookworm|trixie}
case "$suite" in
  bookworm) tag=12 ;;
  trixie) tag=13 ;;
  *) echo "unknown suite: $suite" >&2; exit 2 ;;
esac
image="flaskdeploy/debian:${tag}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image exists"
  exit 0
fi

root=$(mktemp -d "/tmp/rootfs-${suite}.XXXXXX")
trap 'rm -rf "$root"' EXIT

# What a fresh cloud server has: systemd, python3 for Ansible, sudo, ca-certificates.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps \
  "$suite" "$root" "$mirror" >"/tmp/debootstrap-${suite}.log" 2>&1 \
  || { tail -n 30 "/tmp/debootstrap-${suite}.log" >&2; exit 1; }

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
chroot "$root" apt-get clean
rm -f "$root"/var/cache/apt/*.bin

tar -C "$root" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >/dev/null
echo "built $image"
