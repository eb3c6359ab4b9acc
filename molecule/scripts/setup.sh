#!/usr/bin/env bash
# Installs everything the tests and the demo need, on a Debian/Ubuntu machine
# (run as root or with sudo): the controller virtualenv (.venv, from the pinned
# requirements-dev.txt), Docker and mmdebstrap, a running Docker engine, and the
# Debian 12/13 base images. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '==> %s\n' "$*"; }

# Debian packages.
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# Debian's archive keys, which the images' packages are signed with (an Ubuntu
# machine has only its own).
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# ssh and ssh-keygen: a test runs site.yml over SSH.
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
# sshpass: that test also logs in with a password, as on a server a provider hands over.
command -v sshpass >/dev/null 2>&1 || need+=(sshpass)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Docker engine: started by hand where there is no systemd (CI containers).
if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    log "starting docker (systemd)"
    $SUDO systemctl start docker
  else
    log "starting dockerd"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

# Base images (mmdebstrap + docker import; no registry needed), built in the
# background while the controller's virtualenv is made.
pids=()
for suite in bookworm trixie; do
  molecule/scripts/build-image.sh "$suite" &
  pids+=($!)
done

# The controller toolchain. uv (pinned in requirements-dev.txt) installs the rest:
# 37 s alone here where pip took 63 s, for about the same CPU (docs/performance.md).
# It compiles the bytecode as pip does (env.sh turns off writing it later) and takes
# the system's CA certificates (a TLS-intercepting proxy trusted there). pip installs
# where uv fails, where requirements-dev.txt pins no uv, and where pip is set to an
# index of its own (PIP_INDEX_URL or index-url in pip's configuration: uv reads
# neither). The stamp is written last: test.sh starts the linters and pytest once it
# matches, while the images still build.
stamp=.venv/.requirements-dev.txt
if ! cmp -s requirements-dev.txt "$stamp"; then
  log "creating .venv from requirements-dev.txt"
  rm -f "$stamp"
  python3 -m venv .venv
  uv_pin=$(grep -E '^uv==' requirements-dev.txt || true)
  own_index=$({ [ -n "${PIP_INDEX_URL:-}" ] && echo env; } || .venv/bin/pip config list 2>/dev/null \
    | grep -E "(^|\.)index-url='[^']" || true)
  if [ -z "$uv_pin" ] || [ -n "$own_index" ] \
     || ! { .venv/bin/pip install -q "$uv_pin" \
            && .venv/bin/uv pip install -q --system-certs --compile-bytecode --python .venv/bin/python \
                 -r requirements-dev.txt; }; then
    log "installing with pip"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements-dev.txt
  fi
  cp requirements-dev.txt "$stamp"
fi

for pid in "${pids[@]}"; do wait "$pid"; done
log "setup done in ${SECONDS} s"
