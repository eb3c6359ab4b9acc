#!/usr/bin/env bash
# Brings up a local demo server (a Debian 12 container booting systemd), deploys
# the sample app to it with site.yml, and prints the URL to open.
# DEMO_DEBIAN=13 uses Debian 13 instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
molecule/scripts/setup.sh
# shellcheck source=molecule/scripts/env.sh
source molecule/scripts/env.sh
ansible-playbook -i localhost, playbooks/demo.yml -e "demo_debian_version=${DEMO_DEBIAN:-12}"
echo
echo "Open https://localhost:8443/  (self-signed certificate; e.g. curl -k https://localhost:8443/whoami)"
