#!/usr/bin/env python3
"""Virtualenv builds: pip against uv on a real app's pinned requirements.

A benchmark, not a test: it prints figures and asserts nothing. In a fresh Debian
container (image flaskdeploy/debian:12, built by molecule/scripts/setup.sh) that
trusts the controller's extra CA certificates (a TLS-intercepting proxy's, as the
scenarios' servers do), it builds a virtualenv from bench/requirements-52.txt (52
pinned packages) --runs times each, the way the app role's files/venv-build.sh does:
  - pip: `python3 -m venv` and the virtualenv's pip, no cache (app_venv_installer pip),
  - uv, cold: `python3 -m venv --without-pip` and `uv pip install` with an empty cache,
  - uv, warm: the same with the cache the cold runs left (a later deploy on the server),
and prints the median seconds (wall) of each with the packages installed, then
removes the container.

    bench/venv_install.py [--runs 3] [--image flaskdeploy/debian:12]
"""

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "molecule/shared"))
import testlib  # noqa: E402  (the tests' helpers: the same systemd container)

NAME = "fd-bench-venv"
REQUIREMENTS = HERE / "bench" / "requirements-52.txt"
# The uv the app role installs (roles/app/defaults/main.yml).
UV_VERSION = re.search(r"^app_uv_version: (\S+)$", (HERE / "roles/app/defaults/main.yml").read_text(), re.M).group(1)
UV = "/opt/uv/bin/uv"
ENV = "UV_PYTHON_DOWNLOADS=never UV_SYSTEM_CERTS=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_PROGRESS=1"

WAYS = {
    "pip": "python3 -m venv /root/v && /root/v/bin/python -m pip install -q --no-cache-dir --no-input"
           " --disable-pip-version-check -r /root/requirements.txt",
    "uv, cold cache": f"rm -rf /root/cache && python3 -m venv --without-pip /root/v && {ENV} UV_CACHE_DIR=/root/cache"
                      f" {UV} pip install -q --python /root/v/bin/python -r /root/requirements.txt",
    "uv, warm cache": f"python3 -m venv --without-pip /root/v && {ENV} UV_CACHE_DIR=/root/cache"
                      f" {UV} pip install -q --python /root/v/bin/python -r /root/requirements.txt",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="flaskdeploy/debian:12")
    args = parser.parse_args()
    server = testlib.systemd_container(NAME, "bench.test", image=args.image)

    def sh(script):
        done = server.exec_run(["sh", "-c", script])
        if done.exit_code != 0:
            raise SystemExit(f"failed: {script}\n{done.output.decode()[-3000:]}")
        return done.output.decode()

    try:
        for number, path in enumerate(testlib.extra_ca_certificates()):
            certificate = Path(path).read_text()
            sh(f"cat > /usr/local/share/ca-certificates/extra-{number}.crt <<'EOF'\n{certificate}\nEOF")
        sh("apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y ca-certificates python3-venv"
           " >/dev/null && update-ca-certificates >/dev/null"
           " && printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf")
        sh(f"python3 -m venv /opt/uv && /opt/uv/bin/pip install -q --disable-pip-version-check uv=={UV_VERSION}")
        sh(f"cat > /root/requirements.txt <<'EOF'\n{REQUIREMENTS.read_text()}\nEOF")
        packages = len([line for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")])
        print(f"{packages} pinned packages (bench/requirements-52.txt), uv {UV_VERSION}, {args.image},"
              f" median of {args.runs}:", flush=True)
        for way, script in WAYS.items():
            samples = []
            for _ in range(args.runs):
                sh("rm -rf /root/v")
                started = time.monotonic()
                sh(script)
                samples.append(time.monotonic() - started)
            installed = int(sh("ls -d /root/v/lib/python3*/site-packages/*.dist-info | wc -l"))
            print(f"  {way:15} {statistics.median(samples):6.2f} s  ({', '.join(f'{s:.2f}' for s in samples)};"
                  f" {installed} distributions)", flush=True)
    finally:
        server.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
