#!/usr/bin/env bash
# The whole test suite: setup, lint, the sample app's and the test helpers' pytest,
# and every molecule scenario (molecule test: create, converge, idempotence, verify,
# destroy). Extra arguments go to molecule (e.g. -s default to run one scenario).
set -euo pipefail
cd "$(dirname "$0")/../.."
molecule/scripts/setup.sh
# shellcheck source=molecule/scripts/env.sh
source molecule/scripts/env.sh

echo "==> yamllint"
yamllint -s .
echo "==> ansible-lint (production profile)"
ansible-lint -q
echo "==> syntax check"
ansible-playbook -i inventory --syntax-check site.yml playbooks/*.yml
echo "==> pytest (sample_app)"
python -m pytest -q -p no:cacheprovider sample_app/tests
echo "==> molecule"
if [ $# -gt 0 ]; then
  molecule test "$@"
else
  molecule test --all
fi
