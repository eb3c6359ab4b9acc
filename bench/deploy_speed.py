#!/usr/bin/env python3
"""Deploy speed: how long deploy.yml, rollback.yml and a no-op site.yml take on an idle
converged server, under ansible.cfg's strategy (Ansible's linear) and under mitogen,
with the tasks each runs and where a code-only deploy spends its time.

A benchmark, not a test: it prints figures and asserts nothing. For each checkout
given (--repo, default this one; give two to compare a change with what was before,
in the same run) it starts a fresh Debian container that boots systemd (image
flaskdeploy/debian:12, built by molecule/scripts/setup.sh), converges it with that
checkout's site.yml (docker connection, the sample app), then times, with that
checkout's ansible.cfg and playbooks:
  - a no-op deploy.yml (the code deployed already: nothing to stage or switch),
  - a code-only deploy.yml (a new version of the sample app: staged, released,
    switched, reloaded, probed; the run ends once the new code answered),
  - rollback.yml (back to the release before: checked, switched, reloaded, probed),
  - a no-op site.yml rerun,
each --runs times (the median is printed) under each strategy, and the phases of
the last code-only deploy (profile_tasks: the seconds of the tasks of each role, and
of the playbook's own). The containers are removed at the end (--keep: not).

    bench/deploy_speed.py [--repo PATH ...] [--runs 3] [--image flaskdeploy/debian:12]
"""

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "molecule/shared"))
import testlib  # noqa: E402  (the tests' helpers: the same systemd container)
from deploy_under_load import make_version  # noqa: E402  (bench/: the sample app at a version)

STRATEGIES = {"linear": None, "mitogen": "mitogen_linear"}
# profile_tasks' header line: the previous task's duration in parentheses.
HEADER = re.compile(r"^(TASK|RUNNING HANDLER) \[(.*?)\] \**\n.*\((\d+):(\d+):([\d.]+)\)", re.M)


def extra_cas():
    value = os.environ.get("FLASKDEPLOY_EXTRA_CA_CERTS")
    if value is None:
        value = ",".join(sorted(str(p) for p in Path("/usr/local/share/ca-certificates").rglob("*.crt")))
    return [p for p in value.split(",") if p]


def run(repo, inventory, host, playbook, env, extra=None):
    cmd = ["ansible-playbook", "-i", str(inventory), "--limit", host, str(repo / playbook)]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    started = time.monotonic()
    result = subprocess.run(cmd, text=True, capture_output=True, env=env, cwd=repo)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-2000:], sep="\n")
        raise SystemExit(f"failed: {playbook} in {repo}")
    recap = re.search(r"ok=(\d+)\s+changed=(\d+).*?skipped=(\d+)", result.stdout)
    tasks = int(recap.group(1)) + int(recap.group(3)) if recap else 0
    return seconds, tasks, int(recap.group(2)) if recap else -1, result.stdout


def phases(output):
    """Seconds per role (the part of a task's name before ' : '), from profile_tasks."""
    found = HEADER.findall(output)
    spent = collections.Counter()
    # Each header gives the duration of the task before it.
    for (_, before, *_), (_, _, hours, minutes, seconds) in zip(found, found[1:]):
        spent[before.split(" : ")[0] if " : " in before else "(playbook)"] += \
            int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return spent


def version(workdir, repo, number):
    """The path of a copy of repo's sample app reporting version number."""
    return str(make_version(workdir, number, False, repo))


def bench(repo, name, image, runs, workdir):
    workdir = Path(workdir) / name
    workdir.mkdir()
    testlib.systemd_container(name, f"{name}.test", image=image)
    inventory = Path(workdir) / f"{name}.yml"
    inventory.write_text(json.dumps({"appservers": {"hosts": {name: {
        "ansible_connection": "docker", "nginx_server_names": ["bench.test"],
        "ca_trust_certificates": extra_cas()}}}}))
    base = dict(os.environ, ANSIBLE_CONFIG=str(repo / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_CALLBACKS_ENABLED="flaskdeploy_caches,ansible.posix.profile_tasks")
    base.pop("ANSIBLE_STRATEGY", None)
    first = version(workdir, repo, "1.0.0")
    run(repo, inventory, name, "site.yml", dict(base, ANSIBLE_STRATEGY="mitogen_linear"), {"app_source_path": first})
    figures, breakdown, counter = {}, {}, 0
    # (what the server serves, from one strategy's runs to the next: each no-op deploy is one)
    current = first
    for strategy, plugin in STRATEGIES.items():
        env = dict(base, **({"ANSIBLE_STRATEGY": plugin} if plugin else {}))
        rows = collections.defaultdict(list)
        for _ in range(runs):
            rows["no-op deploy.yml"].append(run(repo, inventory, name, "playbooks/deploy.yml", env,
                                                {"app_source_path": current})[:3])
            counter += 1
            current = version(workdir, repo, f"2.0.{counter}")
            seconds, tasks, changed, output = run(repo, inventory, name, "playbooks/deploy.yml", env,
                                                  {"app_source_path": current})
            rows["code-only deploy.yml"].append((seconds, tasks, changed))
            breakdown[strategy] = phases(output)
            rows["rollback.yml"].append(run(repo, inventory, name, "playbooks/rollback.yml", env)[:3])
            # (forward again: the next no-op deploy finds its code serving)
            run(repo, inventory, name, "playbooks/deploy.yml", env, {"app_source_path": current})
        rows["no-op site.yml"].append(run(repo, inventory, name, "site.yml", env, {"app_source_path": current})[:3])
        figures[strategy] = rows
    return figures, breakdown


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", action="append", type=Path, help="a checkout to measure (repeat to compare)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="flaskdeploy/debian:12")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()
    repos = [repo.resolve() for repo in args.repo or [HERE]]
    names = [f"fd-bench-deploy{i}" for i in range(len(repos))]
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for repo, name in zip(repos, names):
                report(repo, args.runs, *bench(repo, name, args.image, args.runs, workdir))
    finally:
        if not args.keep:
            for name in names:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return 0


def report(repo, runs, figures, breakdown):
    """Prints one checkout's figures (as soon as they are measured)."""
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    print(f"\n{repo} ({commit}), median of {runs}:")
    for strategy, rows in figures.items():
        for what, samples in rows.items():
            seconds = statistics.median(s for s, _, _ in samples)
            print(f"  {strategy:8} {what:22} {seconds:6.2f} s  {samples[-1][1]:4d} tasks"
                  f"  changed={samples[-1][2]}")
    for strategy, spent in breakdown.items():
        parts = ", ".join(f"{role} {seconds:.2f} s" for role, seconds in spent.most_common())
        print(f"  {strategy:8} code-only deploy by role: {parts}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
