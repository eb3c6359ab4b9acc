#!/usr/bin/env python3
"""Converge speed: a fresh converge of one server, a no-op rerun, and the same packages
and pip requirements installed by hand on the same image, measured in one run.

A benchmark, not a test: it prints figures and asserts nothing. It starts three fresh
Debian containers that boot systemd (image flaskdeploy/debian:12 by default, built by
molecule/scripts/setup.sh) and removes them at the end:
  - fd-bench-converge: `ansible-playbook site.yml` (https profile, gunicorn) with the
    repository's ansible.cfg (Ansible's linear strategy), timed with the
    ansible.posix.profile_tasks callback, then run again (the no-op rerun);
  - fd-bench-mitogen: the same two runs with mitogen (ANSIBLE_STRATEGY=mitogen_linear,
    the opt-in of docs/performance.md);
  - fd-bench-manual: by hand, what that converge installs: apt-get update, the same
    Debian packages (python3, python3-venv, python3-setuptools, nginx,
    python3-cryptography), a virtualenv with the sample app's requirements and gunicorn.
On the converged server it also times the floor of any Ansible run under the same
ansible.cfg: a play that only gathers the facts, and one that adds FLOOR_TASKS `stat`
tasks (the cheapest check a task can make), against the budget the issue's two targets
leave a no-op rerun together (15% of a converge of at most 1.5x by hand).
Both trust the same extra CA certificates (FLASKDEPLOY_EXTRA_CA_CERTS, as the tests do)
so pip works behind a TLS-intercepting proxy.

    bench/converge_speed.py [--image flaskdeploy/debian:12] [--keep]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "molecule/shared"))
import testlib  # noqa: E402  (the tests' helpers: the same systemd container)

CONVERGE, MITOGEN, MANUAL = "fd-bench-converge", "fd-bench-mitogen", "fd-bench-manual"
PACKAGES = "python3 python3-venv python3-setuptools nginx python3-cryptography"
FLOOR_TASKS = 30


def sh(cmd, **kwargs):
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def extra_cas():
    value = os.environ.get("FLASKDEPLOY_EXTRA_CA_CERTS")
    if value is None:
        value = ",".join(sorted(str(p) for p in Path("/usr/local/share/ca-certificates").rglob("*.crt")))
    return [p for p in value.split(",") if p]


def timed(cmd, **kwargs):
    started = time.monotonic()
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"failed: {' '.join(cmd[:3])} ...")
    return elapsed, result.stdout


def converge(inventory, host, env):
    return timed(["ansible-playbook", "-i", str(inventory), "--limit", host, str(REPO / "site.yml")],
                 env=env, cwd=REPO)


def floor(inventory, host, env, tmp):
    """Seconds for a play that only gathers facts, and for one with FLOOR_TASKS stats more."""
    times = []
    for count in (0, FLOOR_TASKS):
        playbook = Path(tmp) / f"floor-{count}.yml"
        tasks = [{"name": f"Stat {i}", "ansible.builtin.stat": {"path": "/etc/hostname"}} for i in range(count)]
        playbook.write_text(json.dumps([{"name": "Floor", "hosts": host, "gather_facts": True, "tasks": tasks}]))
        # The best of three: the figure is a floor.
        times.append(min(timed(["ansible-playbook", "-i", str(inventory), str(playbook)], env=env, cwd=REPO)[0]
                         for _ in range(3)))
    return times


def manual():
    """What the converge installs, by hand, in one docker exec."""
    for ca in extra_cas():
        sh(["docker", "cp", ca, f"{MANUAL}:/usr/local/share/ca-certificates/{Path(ca).stem}.crt"])
    sh(["docker", "cp", str(REPO / "sample_app/requirements.txt"), f"{MANUAL}:/root/requirements.txt"])
    script = f"""set -e
        update-ca-certificates >/dev/null
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {PACKAGES} >/dev/null
        python3 -m venv /srv/venv
        /srv/venv/bin/pip install -q --cert /etc/ssl/certs/ca-certificates.crt \
          -r /root/requirements.txt gunicorn==27.0.1
    """
    return timed(["docker", "exec", MANUAL, "sh", "-c", script])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="flaskdeploy/debian:12")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()

    for name in (CONVERGE, MITOGEN, MANUAL):
        testlib.systemd_container(name, f"{name}.test", image=args.image)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inventory = Path(tmp) / "hosts.yml"
            host = {"ansible_connection": "docker", "nginx_server_names": ["bench.test"],
                    "ca_trust_certificates": extra_cas()}
            inventory.write_text(json.dumps({"appservers": {"hosts": {CONVERGE: host, MITOGEN: host}}}))
            env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                       ANSIBLE_CALLBACKS_ENABLED="flaskdeploy_caches,ansible.posix.profile_tasks",
                       ANSIBLE_NOCOLOR="1", PROFILE_TASKS_TASK_OUTPUT_LIMIT="12")
            # ansible.cfg's strategy, whatever this shell sets.
            env.pop("ANSIBLE_STRATEGY", None)
            fresh, fresh_out = converge(inventory, CONVERGE, env)
            rerun, rerun_out = converge(inventory, CONVERGE, env)
            facts_only, with_tasks = floor(inventory, CONVERGE, env, tmp)
            mitogen_env = dict(env, ANSIBLE_STRATEGY="mitogen_linear")
            mitogen_fresh = converge(inventory, MITOGEN, mitogen_env)[0]
            mitogen_rerun = converge(inventory, MITOGEN, mitogen_env)[0]
            by_hand = manual()
    finally:
        if not args.keep:
            for name in (CONVERGE, MITOGEN, MANUAL):
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)

    recap = re.search(r"ok=(\d+)\s+changed=(\d+)", rerun_out)
    tasks = len(re.findall(r"^TASK \[", rerun_out, re.MULTILINE))
    print("slowest tasks of the fresh converge (profile_tasks):")
    print("\n".join(fresh_out.split("=" * 20)[-1].strip().splitlines()[-12:]))
    print()
    print(f"fresh converge (linear):    {fresh:6.1f} s")
    print(f"no-op rerun:                {rerun:6.1f} s  ({100 * rerun / fresh:.0f}% of the fresh converge;"
          f" changed={recap.group(2) if recap else '?'})")
    print(f"same packages by hand:      {by_hand:6.1f} s  (the converge takes {fresh / by_hand:.2f}x)")
    print(f"floor, facts only:          {facts_only:6.1f} s  (ansible-playbook, fact gathering, no task)")
    print(f"floor, {FLOOR_TASKS} stat tasks:       {with_tasks:6.1f} s  "
          f"({1000 * (with_tasks - facts_only) / FLOOR_TASKS:.0f} ms a task; the rerun ran {tasks} tasks)")
    print(f"both targets allow a rerun: {0.15 * 1.5 * by_hand:6.1f} s  (15% of 1.5x by hand)")
    print(f"with mitogen (opt-in):      fresh {mitogen_fresh:.1f} s, no-op rerun {mitogen_rerun:.1f} s"
          f" ({100 * mitogen_rerun / mitogen_fresh:.0f}%; {mitogen_fresh / by_hand:.2f}x by hand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
