#!/usr/bin/env python3
"""Growth with hosts: a fresh converge and a no-op rerun of site.yml for 1, 4 and 8
app servers, in one run, with the repository's ansible.cfg (Ansible's linear strategy,
forks 10) and docker connections to fresh Debian containers that boot systemd.

A benchmark, not a test: it prints figures and asserts nothing. For each size it starts
that many containers (image flaskdeploy/debian:12, built by molecule/scripts/setup.sh;
the sample app, https profile, gunicorn), converges them together, reruns site.yml,
and removes them before the next size. For each run it prints the wall time, the
controller's CPU seconds (user + system of ansible-playbook and every process it
waited for: its workers, the docker clients of the connection), the containers' own
CPU seconds (their cgroups: the Python each task starts on the server) and how busy
the machine's cores were (/proc/stat, every second). The containers share this
machine's cores with the controller, as real servers do not. #33's target: 8 hosts' rerun at most
2.5x one host's.

    bench/growth.py [--sizes 1 4 8] [--image flaskdeploy/debian:12] [--strategy linear]
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "molecule/shared"))
import testlib  # noqa: E402  (the tests' helpers: the same systemd container)


def extra_cas():
    value = os.environ.get("FLASKDEPLOY_EXTRA_CA_CERTS")
    if value is None:
        value = ",".join(sorted(str(p) for p in Path("/usr/local/share/ca-certificates").rglob("*.crt")))
    return [p for p in value.split(",") if p]


def cpu_times():
    """(busy, total) jiffies of all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class BusySampler:
    """The share of the machine's cores busy over a run, sampled every second."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        last = cpu_times()
        while not self._stop.wait(1):
            now = cpu_times()
            busy, total = now[0] - last[0], now[1] - last[1]
            if total:
                self.samples.append(busy / total)
            last = now

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def containers_cpu(names):
    """CPU seconds the containers have used (cgroup v1's cpuacct, or v2's cpu.stat);
    None where neither is found."""
    total = 0.0
    for name in names:
        cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True,
                             text=True).stdout.strip()
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat")
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            total += int(re.search(r"^usage_usec (\d+)", v2.read_text(), re.M).group(1)) / 1e6
        else:
            return None
    return total


def playbook(inventory, env, names):
    """Runs site.yml: (wall seconds, controller CPU seconds, busy share, tasks, changed,
    the containers' CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers_before = containers_cpu(names)
    started = time.monotonic()
    with BusySampler() as busy:
        result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(REPO / "site.yml")],
                                env=env, cwd=REPO, text=True, capture_output=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
        raise SystemExit("site.yml failed")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    servers_after = containers_cpu(names)
    servers = None if None in (servers_before, servers_after) else servers_after - servers_before
    tasks = len(re.findall(r"^TASK \[", result.stdout, re.M))
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", result.stdout))
    return wall, cpu, busy.mean, tasks, changed, servers


def measure(size, image, env):
    names = [f"fd-bench-grow-{i}" for i in range(1, size + 1)]
    try:
        for name in names:
            testlib.systemd_container(name, f"{name}.test", image=image)
        with tempfile.TemporaryDirectory() as tmp:
            inventory = Path(tmp) / "hosts.yml"
            host = {"ansible_connection": "docker", "nginx_server_names": ["bench.test"],
                    "ca_trust_certificates": extra_cas()}
            inventory.write_text(json.dumps({"appservers": {"hosts": {name: host for name in names}}}))
            fresh = playbook(inventory, env, names)
            rerun = playbook(inventory, env, names)
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return fresh, rerun


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--image", default="flaskdeploy/debian:12")
    parser.add_argument("--strategy", default="linear", help="linear (ansible.cfg's) or mitogen_linear")
    args = parser.parse_args()

    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_STRATEGY", None)
    if args.strategy != "linear":
        env["ANSIBLE_STRATEGY"] = args.strategy
    forks = re.search(r"^forks\s*=\s*(\d+)", (REPO / "ansible.cfg").read_text(), re.M)
    cores = os.cpu_count()
    rows = {}
    for size in args.sizes:
        rows[size] = fresh, rerun = measure(size, args.image, env)
        for label, (wall, cpu, busy, tasks, changed, servers) in (("fresh converge", fresh),
                                                                   ("no-op rerun", rerun)):
            print(f"{size} host(s), {label:14}: {wall:7.1f} s wall, controller CPU {cpu:7.1f} s,"
                  f" the containers' CPU {servers if servers is None else round(servers, 1)} s,"
                  f" cores busy {100 * busy:3.0f}%, {tasks} tasks, changed={changed}", flush=True)

    print()
    print(f"site.yml, {args.strategy} strategy, forks {forks.group(1) if forks else '?'}, {cores} cores,"
          " docker connections to fresh containers on this machine")
    print("| hosts | fresh converge: wall, controller CPU, servers' CPU, busy"
          " | no-op rerun: wall, controller CPU, servers' CPU, busy |"
          f" rerun against {min(rows) if rows else 1} host(s) |")
    print("| --- | --- | --- | --- |")
    base = rows[min(rows)][1][0]
    for size, (fresh, rerun) in rows.items():
        cells = [f"{run[0]:.1f} s, {run[1]:.1f} s, {'?' if run[5] is None else f'{run[5]:.1f} s'},"
                 f" {100 * run[2]:.0f}%" for run in (fresh, rerun)]
        print(f"| {size} | {cells[0]} | {cells[1]} | {rerun[0] / base:.2f}x |")
    if 1 in rows and max(rows) > 1:
        top = max(rows)
        one, many = rows[1][1], rows[top][1]
        print()
        print(f"- {top} hosts' rerun: {many[0] / one[0]:.2f}x one host's (#33's target: at most 2.5x for 8)")
        print(f"- controller CPU per host and rerun: 1 host {one[1]:.1f} s, {top} hosts {many[1] / top:.1f} s;"
              f" per task and host: {1000 * one[1] / max(one[3], 1):.0f} ms and"
              f" {1000 * many[1] / max(many[3], 1) / top:.0f} ms")
        if many[5] is not None:
            print(f"- the servers' own CPU per task and host (Python started and the module run on the server):"
                  f" {1000 * many[5] / max(many[3], 1) / top:.0f} ms; here every server shares this machine's"
                  f" {os.cpu_count()} cores with the controller, as real servers do not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
