#!/usr/bin/env python3
"""Deploys under load: wrk against the demo server while playbooks/deploy.yml switches releases.

A benchmark, not a test: it prints figures and asserts nothing. It needs the demo
server (molecule/scripts/demo.sh; started here if it is not running) and wrk
(installed with apt if missing). Traffic goes only to 127.0.0.1, the demo's
published HTTPS port.

For a baseline and then each deploy (code-only deploys reload gunicorn with HUP;
the one marked "new venv" changes requirements.txt, so gunicorn restarts on a new
virtualenv while systemd holds the socket) it prints: requests served, requests/s,
errors (socket errors + non-2xx/3xx), p99 and worst latency during the window, which
starts 3 s before the deploy and ends 3 s after it (wrk is stopped with SIGINT).

    bench/deploy_under_load.py [--deploys 4] [--connections 32] [--baseline 20]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wrk_output

REPO = Path(__file__).resolve().parents[1]
DEMO = "flaskdeploy-demo"
# localhost (127.0.0.1) is the demo's server name: nginx refuses TLS for other names.
URL = "https://localhost:8443/version"


def sh(*cmd, **kwargs):
    return subprocess.run(cmd, check=True, text=True, **kwargs)


def ensure_tools():
    if not shutil.which("wrk"):
        sh("apt-get", "install", "-y", "-q", "wrk", stdout=subprocess.DEVNULL)
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", DEMO],
                             capture_output=True, text=True)
    if running.stdout.strip() != "true":
        sh(str(REPO / "molecule/scripts/demo.sh"))


def make_version(workdir, version, new_venv, repo=REPO):
    """A copy of repo's sample app reporting version (a new virtualenv's requirements
    with new_venv), in workdir/v<version>."""
    target = Path(workdir) / f"v{version}"
    shutil.copytree(repo / "sample_app", target,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "tests"))
    init = target / "hello" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', init.read_text()))
    if new_venv:
        with open(target / "requirements.txt", "a", encoding="utf-8") as handle:
            handle.write(f"# {version}: a new virtualenv\n")
    return target


def load_window(connections, operation=None, seconds=None, pad=3):
    """wrk from pad s before operation() until pad s after it (or for seconds without
    one): wrk's figures, with the operation's seconds and whether it succeeded."""
    wrk = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", "-d600s", "--timeout", "10s", "--latency", URL],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took, ok = 0.0, True
    try:
        if operation:
            time.sleep(pad)
            started = time.monotonic()
            ok = operation()
            took = time.monotonic() - started
            time.sleep(pad)
        else:
            time.sleep(seconds)
    finally:
        wrk.send_signal(signal.SIGINT)  # wrk prints its figures on SIGINT
    output, _ = wrk.communicate(timeout=60)
    result = wrk_output.parse(output)
    result.update(seconds=took, ok=ok)
    return result


def window(args, deploy=None):
    """wrk from 3 s before deploy() until 3 s after it (or args.baseline s without one)."""
    result = load_window(args.connections, deploy, args.baseline)
    result.update(deploy_s=result["seconds"], deploy_ok=result["ok"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--baseline", type=int, default=20, help="seconds of the no-deploy window")
    args = parser.parse_args()
    ensure_tools()

    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(REPO / "roles"),
               PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")  # setup.sh's ansible
    rows = [("baseline (no deploy)", window(args))]
    with tempfile.TemporaryDirectory() as workdir:
        inventory = Path(workdir) / "inventory.yml"
        inventory.write_text(json.dumps({"appservers": {"hosts": {DEMO: {
            "ansible_connection": "docker"}}}}))
        for number in range(1, args.deploys + 1):
            new_venv = number == 3
            version = f"1.{int(time.time())}.{number}"
            source = make_version(workdir, version, new_venv)

            def deploy(source=source):
                result = subprocess.run(
                    ["ansible-playbook", "-i", str(inventory), str(REPO / "playbooks/deploy.yml"),
                     "-e", json.dumps({"app_source_path": str(source)})],
                    capture_output=True, text=True, env=env, cwd=REPO)
                if result.returncode != 0:
                    print(result.stdout[-2000:], file=sys.stderr)
                return result.returncode == 0

            label = f"deploy {number} ({'new venv, restart' if new_venv else 'code only, HUP'})"
            rows.append((label, window(args, deploy)))

    print(f"\nwrk -t2 -c{args.connections} against {URL} (the demo server), from 3 s before each"
          " deploy to 3 s after it\n")
    print("| window | deploy | requests | req/s | errors | p99 ms | worst ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, r in rows:
        deploy = f"{r['deploy_s']:.1f}s {'ok' if r['deploy_ok'] else 'FAILED'}" if r["deploy_s"] else "-"
        print(f"| {label} | {deploy} | {r['requests']} | {r['rps']:.0f} | {r['errors']} "
              f"| {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
