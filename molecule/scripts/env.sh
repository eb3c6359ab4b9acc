# Sourced by the test and demo scripts: the controller's virtualenv, and the extra
# CA certificates the servers should trust.
#
# FLASKDEPLOY_EXTRA_CA_CERTS: comma-separated PEM files on the controller that the
# test and demo servers add to their trust store (ca_trust role). By default, the
# CAs this machine added locally (/usr/local/share/ca-certificates): a corporate or
# CI proxy that intercepts TLS is trusted there, and pip on the servers needs it.
# shellcheck shell=bash
# shellcheck disable=SC1091
source .venv/bin/activate
if [ -z "${FLASKDEPLOY_EXTRA_CA_CERTS+x}" ]; then
  FLASKDEPLOY_EXTRA_CA_CERTS=$(find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort | paste -sd, -)
fi
export FLASKDEPLOY_EXTRA_CA_CERTS
export PYTHONDONTWRITEBYTECODE=1
