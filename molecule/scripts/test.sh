#!/usr/bin/env bash
# The whole test suite: setup, lint, the sample app's and the test helpers' pytest,
# and every molecule scenario (molecule test: create, converge, idempotence, verify,
# destroy). Extra arguments go to molecule (e.g. -s default to run one scenario).
set -euo pipefail
cd "$(dirname "$0")/../.."
molecule/scripts/setup.sh
# shellcheck source=molecule/scripts/env.sh
source molecule/scripts/env.sh

# Output is kept to add up the pytest counts (the sample app's and every
# scenario's testinfra run) into one closing line.
log=$(mktemp)
logs=$(mktemp -d)
trap 'rm -rf "$log" "$logs"' EXIT

# The quick checks first: a syntax error fails the run at once.
echo "==> yamllint"
yamllint -s .
echo "==> syntax check"
ansible-playbook -i inventory --syntax-check site.yml playbooks/*.yml

# ansible-lint and pytest (a few minutes); in the full run, beside the scenarios.
checks() {
  local rc=0
  echo "==> ansible-lint (production profile)"
  ansible-lint -q || rc=1
  echo "==> pytest (sample_app, release tool, role and playbook vars, benchmark parser, strategy plugin)"
  python -m pytest -q -p no:cacheprovider sample_app/tests roles/app/tests roles/processes/tests \
    bench/tests plugins/tests playbooks/tests || rc=1
  return "$rc"
}

set +e
if [ $# -gt 0 ]; then
  checks 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  echo "==> molecule"
  molecule test "$@" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
else
  # Every scenario, in three lanes run side by side (the scenarios use their own
  # containers and networks); each lane runs its scenarios one after the other.
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml \
    | cut -d/ -f2 | sort)
  # The scenarios' playbooks run under mitogen, the README's opt-in (about twice as
  # fast). ansible.cfg's default, Ansible's linear strategy, runs default's first-run
  # test: three new servers checked, converged and rerun over SSH. Both are tested on
  # every run. (A whole scenario under linear took acme from 386 s to 809 s here.)
  lane() {
    for scenario in "$@"; do
      start=$SECONDS
      strategy=mitogen_linear
      if ANSIBLE_STRATEGY=$strategy molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1; then
        result=passed
      else result=failed; touch "$logs/$scenario.failed"; fi
      echo "==> molecule scenario $scenario ($strategy): $result in $((SECONDS - start)) s"
    done
  }
  # Three lanes (seconds in CI, last measured with three lanes sharing two cores):
  # default (~1860, with the first-run test's fresh servers) and acme (~480); deploy
  # (~1740) and wsgi (~570); cluster (~1040) and apps (~440). The run is CPU-bound
  # (about 15 % idle), so a lane more shortens it little: only less work does. A
  # scenario not listed joins the third lane.
  lane1=() lane2=() lane3=()
  for scenario in "${scenarios[@]}"; do
    case $scenario in
      default|acme) lane1+=("$scenario") ;;
      deploy|wsgi) lane2+=("$scenario") ;;
      *) lane3+=("$scenario") ;;
    esac
  done
  echo "==> molecule (lanes: ${lane1[*]} | ${lane2[*]} | ${lane3[*]})"
  lane "${lane1[@]}" &
  lane "${lane2[@]}" &
  lane "${lane3[@]}" &
  checks >"$logs/checks.log" 2>&1
  checks_rc=$?
  wait
  rc=$checks_rc
  tee -a "$log" <"$logs/checks.log"
  for scenario in "${scenarios[@]}"; do
    echo "==> molecule test -s $scenario"
    tee -a "$log" <"$logs/$scenario.log"
    [ -e "$logs/$scenario.failed" ] && rc=1
  done
fi
set -e

count() {
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '[0-9]+ (passed|failed).* in [0-9.]+s' \
    | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'
}
echo "total: $(count passed) passed, $(count failed) failed"
exit "$rc"
