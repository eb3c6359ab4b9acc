#!/usr/bin/env bash
# The whole test suite: setup, lint, the sample app's and the test helpers' pytest,
# and every molecule scenario (molecule test: create, converge, idempotence, verify,
# destroy). Extra arguments go to molecule (e.g. -s default to run one scenario).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Output is kept to add up the pytest counts (the sample app's and every
# scenario's testinfra run) into one closing line.
log=$(mktemp)
logs=$(mktemp -d)
setup=
# (a setup still building the images is waited for, not left running)
trap '[ -z "$setup" ] || wait "$setup" || true; rm -rf "$log" "$logs"' EXIT
if [ $# -gt 0 ]; then
  molecule/scripts/setup.sh
else
  # The whole run: the setup goes on in the background. The controller's virtualenv
  # is ready first (uv: 37 s alone, 1-2 minutes beside the image builds, where pip
  # took 115 s), the base images later (139 s for the whole setup here, 2026-12-07):
  # the linters and pytest start as soon as the virtualenv is there. On two cores,
  # busy throughout the setup, that moves their CPU earlier rather than saving it
  # (docs/performance.md: CI50 took as long as CI48 before it); it can only save time
  # where the setup waits (a slow mirror, more cores), not measured here.
  molecule/scripts/setup.sh &
  setup=$!
  until cmp -s requirements-dev.txt .venv/.requirements-dev.txt; do
    kill -0 "$setup" 2>/dev/null || break
    sleep 1
  done
  cmp -s requirements-dev.txt .venv/.requirements-dev.txt || { wait "$setup" || true; setup=; exit 1; }
fi
# shellcheck source=molecule/scripts/env.sh
source molecule/scripts/env.sh
# Each playbook run of the tests adds a line (testlib.record_playbook_time): where
# CI's time goes, summed at the end.
export FLASKDEPLOY_PLAYBOOK_TIMES="$logs/playbook-times.jsonl"

# The quick checks first: a syntax error fails the run at once.
echo "==> yamllint"
yamllint -s .
echo "==> syntax check"
ansible-playbook -i inventory --syntax-check site.yml playbooks/*.yml

# ansible-lint and pytest (a minute and three here, one core each), side by side; in
# the full run, while the images build, then beside the scenarios.
checks() {
  local rc=0 lint
  ansible-lint -q >"$logs/lint.out" 2>&1 &
  lint=$!
  python -m pytest -q -p no:cacheprovider sample_app/tests roles/app/tests roles/processes/tests roles/alert/tests \
    bench/tests plugins/tests playbooks/tests >"$logs/pytest.out" 2>&1 || rc=1
  wait "$lint" || rc=1
  echo "==> ansible-lint (production profile)"
  cat "$logs/lint.out"
  echo "==> pytest (sample_app, release tool, role and playbook vars, benchmark parser, strategy plugin, docs)"
  cat "$logs/pytest.out"
  return "$rc"
}

set +e
if [ $# -gt 0 ]; then
  checks 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  echo "==> molecule"
  molecule -c .config/molecule/config.yml test "$@" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
else
  # Every scenario, and the first-run test as a job of its own, in three lanes run
  # side by side (the scenarios use their own containers and networks). Each lane
  # takes the next job of the queue when it is free. Seconds last measured (a clean
  # clone, the base images built anew as on CI, 2026-12-08, CI54): deploy 1133,
  # default 967, cluster 1160, apps 933, first-run 591, wsgi 579, acme 270, upgrade
  # 171; 34m53s, 771 passed (an hour before, CI52, all but the workers' change:
  # 31m51s).
  # Earlier measurements, and what changed between them, are in docs/performance.md:
  # only runs interleaved on one machine compare (the same code took 34 to 40
  # minutes on different afternoons here).
  # The two cores are the limit (process accounting: two fifths of the CPU is
  # the controller's ansible-playbook; four lanes were slower than three): fewer tasks
  # and fewer playbook runs shorten the run, more lanes do not. The four long
  # scenarios go first; a scenario not listed goes last. The upgrade test goes last too: it takes
  # the lane that frees first after wsgi, and ends before apps does.
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml \
    | cut -d/ -f2 | sort)
  order=(deploy default cluster apps first-run wsgi acme upgrade)
  jobs=()
  for job in "${order[@]}"; do
    [ "$job" = first-run ] || [ "$job" = upgrade ] || [ -e "molecule/$job/molecule.yml" ] && jobs+=("$job")
  done
  for scenario in "${scenarios[@]}"; do
    [[ " ${order[*]} " == *" $scenario "* ]] || jobs+=("$scenario")
  done
  # The scenarios' playbooks run under mitogen, the opt-in docs/performance.md describes (about twice as
  # fast). ansible.cfg's default, Ansible's linear strategy, runs the first-run
  # test: a new server checked, converged and rerun over SSH. Both are tested on
  # every run. (A whole scenario under linear took acme from 386 s to 809 s here.)
  run_job() {
    local job=$1 start=$SECONDS result=passed
    if [ "$job" = first-run ]; then
      FLASKDEPLOY_FIRST_RUN_ELSEWHERE= python -m pytest -v -p no:cacheprovider --durations 8 molecule/default/tests/test_first_run.py \
        >"$logs/$job.log" 2>&1 || result=failed
      echo "==> first-run test (linear): $result in $((SECONDS - start)) s" | tee "$logs/$job.result"
    elif [ "$job" = upgrade ]; then
      FLASKDEPLOY_UPGRADE_ELSEWHERE= python -m pytest -v -p no:cacheprovider --durations 8 molecule/default/tests/test_upgrade.py \
        >"$logs/$job.log" 2>&1 || result=failed
      echo "==> upgrade test (from the previous tagged version): $result in $((SECONDS - start)) s" | tee "$logs/$job.result"
    else
      FLASKDEPLOY_FIRST_RUN_ELSEWHERE=1 FLASKDEPLOY_UPGRADE_ELSEWHERE=1 ANSIBLE_STRATEGY=mitogen_linear molecule -c .config/molecule/config.yml test -s "$job" >"$logs/$job.log" 2>&1 || result=failed
      echo "==> molecule scenario $job (mitogen_linear): $result in $((SECONDS - start)) s" | tee "$logs/$job.result"
    fi
    [ "$result" = passed ] || touch "$logs/$job.failed"
  }
  # A lane claims job number n by creating $logs/claim.n (mkdir: atomic).
  lane() {
    local n
    for n in "${!jobs[@]}"; do
      mkdir "$logs/claim.$n" 2>/dev/null && run_job "${jobs[$n]}"
    done
  }
  # (FLASKDEPLOY_CI_LANES: another number of lanes, to measure)
  lanes=${FLASKDEPLOY_CI_LANES:-3}
  [[ $lanes =~ ^[1-9][0-9]*$ ]] || { echo "FLASKDEPLOY_CI_LANES must be a number of lanes, not '$lanes'" >&2; exit 2; }
  checks >"$logs/checks.log" 2>&1 &
  checks_pid=$!
  wait "$setup"
  setup_rc=$?
  setup=
  if [ "$setup_rc" -ne 0 ]; then
    echo "==> setup failed (exit $setup_rc); the checks' output follows" >&2
    wait "$checks_pid"
    cat "$logs/checks.log"
    exit 1
  fi
  echo "==> jobs, in $lanes lanes: ${jobs[*]}"
  for _ in $(seq "$lanes"); do
    lane &
  done
  wait "$checks_pid"
  checks_rc=$?
  wait
  rc=$checks_rc
  tee -a "$log" <"$logs/checks.log"
  for job in "${jobs[@]}"; do
    echo "==> $job"
    tee -a "$log" <"$logs/$job.log"
    [ -e "$logs/$job.failed" ] && rc=1
  done
  # The logs are long; the verdicts are repeated where a reader of the tail sees them.
  echo "==> summary"
  [ "$checks_rc" -eq 0 ] && echo "checks (ansible-lint, pytest): passed" || echo "checks (ansible-lint, pytest): failed"
  for job in "${jobs[@]}"; do
    cat "$logs/$job.result" 2>/dev/null || echo "==> $job: did not run"
  done
fi
set -e

# Every failed or erroring test by name (pytest's short summary, molecule's frame stripped).
sed 's/\x1b\[[0-9;]*m//g; s/^[ │]*//' "$log" | grep -E '^(FAILED|ERROR) [^ ]*::' | sort -u | head -40 || true

count() {
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '[0-9]+ (passed|failed).* in [0-9.]+s' \
    | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'
}
# The tests' playbook runs: how many, their seconds, and the tests that spend the most.
python - "$FLASKDEPLOY_PLAYBOOK_TIMES" <<'PY' || true
import collections, json, sys
try:
    runs = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
except FileNotFoundError:
    runs = []
per_test = collections.Counter()
for run in runs:
    per_test[run["test"]] += run["seconds"]
print(f"tests' playbook runs: {len(runs)}, {sum(r['seconds'] for r in runs):.0f} s; the most:")
for test, seconds in per_test.most_common(8):
    print(f"  {seconds:6.0f} s  {test}")
PY
# Every check that passed only on its second try (testlib.RetriedWarning), with what it saw.
sed 's/\x1b\[[0-9;]*m//g; s/^[ │]*//' "$log" | grep -oE 'RetriedWarning: .*' | sort -u | head -10 || true
echo "total: $(count passed) passed, $(count failed) failed"
exit "$rc"
