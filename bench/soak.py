#!/usr/bin/env python3
"""Soak: code-only deploys and rollbacks in turn on the demo server under steady load,
and what the host holds after each.

A benchmark, not a test: it prints figures and asserts nothing. It needs the demo
server (molecule/scripts/demo.sh; started here if it is not running) and wrk on this
machine (installed with apt if missing). Traffic goes only to 127.0.0.1, the demo's
published HTTPS port; every wrk run is bounded in time.

First a baseline window of steady load with no deploy. Then --operations operations,
alternately playbooks/deploy.yml of a new version of the sample app (every
--new-venv-every-th operation with new requirements: a new virtualenv and a restart;
the others reload) and playbooks/rollback.yml (back to the release before). wrk runs
from 1 s before each operation to 1 s after it; then the script reads, on the server,
the release and virtualenv directories (pruning keeps them to app_releases_keep),
the disk used under /srv/<app>, and the WSGI master's resident memory and open file
descriptors. It prints the series and what grew from the first operation to the last.

    bench/soak.py [--operations 50] [--connections 16] [--baseline 10] [--new-venv-every 10]
                  [--strategy linear]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy_under_load import DEMO, URL, ensure_tools, load_window, make_version

REPO = Path(__file__).resolve().parents[1]
APP = "hello"


def on_server(script):
    return subprocess.run(["docker", "exec", DEMO, "sh", "-c", script], check=True, capture_output=True,
                          text=True).stdout.strip()


def host_state():
    """What the host holds: releases, virtualenvs, MB under /srv/<app>, and the WSGI
    master's memory (kB) and open descriptors."""
    out = on_server(f"""
        ls /srv/{APP}/releases | wc -l; ls /srv/{APP}/venvs | wc -l; du -sm /srv/{APP} | cut -f1
        pid=$(systemctl show -P MainPID {APP}.service)
        awk '/^VmRSS:/ {{print $2}}' /proc/$pid/status; ls /proc/$pid/fd | wc -l; echo $pid""")
    releases, venvs, disk_mb, rss_kb, fds, pid = out.split()
    return {"releases": int(releases), "venvs": int(venvs), "disk_mb": int(disk_mb),
            "rss_kb": int(rss_kb), "fds": int(fds), "pid": int(pid)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=50, help="deploys and rollbacks, in turn")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline", type=int, default=10, help="seconds of load before any operation")
    parser.add_argument("--new-venv-every", type=int, default=10,
                        help="every n-th operation deploys new requirements (a new virtualenv)")
    parser.add_argument("--strategy", default="linear", help="linear (ansible.cfg's) or mitogen_linear")
    args = parser.parse_args()
    ensure_tools()

    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    env.pop("ANSIBLE_STRATEGY", None)
    if args.strategy != "linear":
        env["ANSIBLE_STRATEGY"] = args.strategy
    baseline = load_window(args.connections, seconds=args.baseline)
    print(f"baseline: {baseline['rps']:.0f} req/s, p99 {baseline['p99_ms']:.1f} ms, errors {baseline['errors']}",
          flush=True)
    first, rows = host_state(), []
    print(f"before: {json.dumps(first)}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        inventory = Path(workdir) / "inventory.yml"
        inventory.write_text(json.dumps({"appservers": {"hosts": {DEMO: {"ansible_connection": "docker"}}}}))
        for number in range(1, args.operations + 1):
            if number % 2:
                new_venv = number % args.new_venv_every == args.new_venv_every - 1
                source = make_version(workdir, f"2.{int(time.time())}.{number}", new_venv)
                playbook, extra = "playbooks/deploy.yml", {"app_source_path": str(source)}
                label = "deploy, new venv" if new_venv else "deploy, code only"
            else:
                playbook, extra, label = "playbooks/rollback.yml", {}, "rollback"

            def operation(playbook=playbook, extra=extra):
                result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(REPO / playbook),
                                         "-e", json.dumps(extra)], capture_output=True, text=True,
                                        env=env, cwd=REPO)
                if result.returncode != 0:
                    print(result.stdout[-2000:], file=sys.stderr)
                return result.returncode == 0

            load = load_window(args.connections, operation, pad=1)
            state = host_state()
            rows.append((number, label, load, state))
            print(f"{number:3} {label:18} {load['seconds']:5.1f} s {'ok' if load['ok'] else 'FAILED':6}"
                  f" errors {load['errors']:3}  p99 {load['p99_ms']:7.1f} ms  releases {state['releases']}"
                  f"  venvs {state['venvs']}  disk {state['disk_mb']} MB  master rss {state['rss_kb']} kB"
                  f"  fds {state['fds']}  pid {state['pid']}", flush=True)

    failed_ops = [n for n, _, load, _ in rows if not load["ok"]]
    errors = sum(load["errors"] for _, _, load, _ in rows)
    p99s = sorted(load["p99_ms"] for _, _, load, _ in rows)
    last = rows[-1][3]
    print()
    print(f"{len(rows)} operations ({args.strategy}), wrk -t2 -c{args.connections} against {URL}")
    print(f"- failed operations: {failed_ops or 'none'}; failed requests during them: {errors}")
    print(f"- p99 during the operations: median {p99s[len(p99s) // 2]:.1f} ms, worst {p99s[-1]:.1f} ms;"
          f" baseline {baseline['p99_ms']:.1f} ms")
    for key in ("releases", "venvs", "disk_mb", "rss_kb", "fds"):
        series = [state[key] for _, _, _, state in rows]
        print(f"- {key}: before {first[key]}, after the first operation {series[0]}, last {last[key]},"
              f" min {min(series)}, max {max(series)}")
    masters = len({state["pid"] for _, _, _, state in rows})
    print(f"- WSGI master processes seen: {masters} (a new virtualenv restarts the service)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
