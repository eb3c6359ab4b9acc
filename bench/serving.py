#!/usr/bin/env python3
"""Serving speed, side by side: the Flask development server, the WSGI servers alone, the
deployed stack (nginx -> WSGI server over its unix socket, HTTP and HTTPS), nginx with
TLS in front of backends that keep connections (gunicorn's gthread worker, granian) with
upstream keep-alive, and nginx answering a static file (the ceiling for anything proxied).

A benchmark, not a test: it prints figures and asserts nothing. It runs on the demo
server (molecule/scripts/demo.sh; started here if it is not running), inside the
container, so every request goes to 127.0.0.1 there and the load tools (wrk for
HTTP/1.1, h2load for HTTP/2; both from Debian) share the server's CPUs like on a real
host. For the comparison it starts,
for the length of the run only:
  - the Flask development server on 127.0.0.1:5001 (`flask run`, threaded),
  - a second gunicorn with the deployed gunicorn.conf.py on 127.0.0.1:5002, logging
    each request as the wsgi profile deploys it (at the edge, gunicorn is the only one
    to log; behind nginx only nginx logs), so both sides log each request once,
  - a gunicorn with the same gunicorn.conf.py but the threaded worker (gthread, the
    deployed number of processes, --threads threads each, keep-alive 5 s) on
    127.0.0.1:5013, and granian (--granian-version, pip-installed for the run into
    /opt/fd-bench-granian beside the release's virtualenv; WSGI, one process per CPU,
    --threads blocking threads each) on 127.0.0.1:5014: backends that keep a client's
    connection open, without their own access log, as behind nginx,
  - an nginx server block on 127.0.0.1:8081 that proxies to the deployed upstream
    (the unix socket) and serves /static/ like the site, without TLS and without
    open_file_cache (bench/tuning.py measures that), and two with the site's TLS
    settings and certificate on 127.0.0.1:9443 (-> gthread) and 9444 (-> granian),
    each with an upstream keeping 16 idle connections (nginx_upstream_keepalive).
The deployed site itself is measured over HTTPS on 127.0.0.1:443.

For each target and concurrency it prints requests/s, p50/p99 latency, errors
(socket errors, timeouts, non-2xx/3xx) and writes bench/results/serving.md and, when
matplotlib is installed, bench/results/serving.png.

    bench/serving.py [--connections 64 1024] [--duration 10] [--container flaskdeploy-demo]
                     [--threads 4] [--granian-version 2.8.9]
"""

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import h2load_output
import wrk_output

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
APP = "hello"

BENCH_SITE = """
# flaskdeploy bench: plain-HTTP twin of the site, removed after the run.
server {
    listen 127.0.0.1:8081;
    server_name localhost;
    location /static/ {
        alias %(static)s/;
        expires 7d;
        access_log off;
    }
    location / {
        proxy_pass http://%(app)s_wsgi;
%(proxy)s
    }
}
"""
# nginx with the site's TLS settings in front of a backend that keeps connections.
BENCH_TLS_SITE = """
upstream fd_bench_%(name)s {
    server 127.0.0.1:%(backend)d;
    keepalive 16;
}
server {
    listen 127.0.0.1:%(port)d ssl;
    server_name localhost;
%(tls)s
    location / {
        proxy_pass http://fd_bench_%(name)s;
%(proxy)s
    }
}
"""
# The site's proxy settings (roles/nginx/templates/etc/nginx/conf.d/SITE.conf.j2), shared with tuning.py.
PROXY_DIRECTIVES = """\
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;"""

# (name, URL); names ending in "HTTP/2" are measured with h2load (HTTPS, ALPN h2),
# the others with wrk (HTTP/1.1).
DEV = "Flask dev server"
SYNC = "gunicorn sync alone (logging requests)"
GTHREAD = "gunicorn gthread alone (keep-alive)"
GRANIAN = "granian alone (keep-alive)"
STACK_HTTP = "nginx -> gunicorn sync, HTTP"
STACK_HTTPS = "nginx -> gunicorn sync, HTTPS (deployed)"
GTHREAD_HTTPS = "nginx -> gunicorn gthread, HTTPS, keep-alive"
GRANIAN_HTTPS = "nginx -> granian, HTTPS, keep-alive"
TARGETS = [
    (DEV, "http://127.0.0.1:5001/version"),
    (SYNC, "http://127.0.0.1:5002/version"),
    (GTHREAD, "http://127.0.0.1:5013/version"),
    (GRANIAN, "http://127.0.0.1:5014/version"),
    (STACK_HTTP, "http://127.0.0.1:8081/version"),
    (STACK_HTTPS, "https://localhost:443/version"),
    ("nginx -> gunicorn sync, HTTPS, HTTP/2", "https://localhost:443/version"),
    (GTHREAD_HTTPS, "https://localhost:9443/version"),
    (GRANIAN_HTTPS, "https://localhost:9444/version"),
    ("nginx static file, HTTP (no open_file_cache)", "http://127.0.0.1:8081/static/style.css"),
    ("nginx static file, HTTPS", "https://localhost:443/static/style.css"),
    ("nginx static file, HTTPS, HTTP/2", "https://localhost:443/static/style.css"),
]
# The site's TLS directives the bench's TLS blocks copy (not those that name the
# site's own server: stapling, rejecting unknown names).
TLS_SKIP = ("ssl_reject_handshake", "ssl_stapling", "ssl_trusted_certificate")
GRANIAN_VERSION = "2.8.9"


def docker_exec(container, script, check=True, timeout=600):
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], check=check,
                          capture_output=True, text=True, timeout=timeout)


def ensure_demo(container):
    running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container],
                             capture_output=True, text=True)
    if running.stdout.strip() != "true":
        subprocess.run([str(REPO / "molecule/scripts/demo.sh")], check=True)
    docker_exec(container, "command -v wrk >/dev/null && command -v h2load >/dev/null || (apt-get update -qq && "
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client)")


def site_tls_directives(container):
    """The ssl_* lines of the deployed site's HTTPS server block, once each."""
    conf = docker_exec(container, f"cat /etc/nginx/conf.d/{APP}.conf").stdout
    lines = []
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("ssl_") and not line.startswith(TLS_SKIP) and line not in lines:
            lines.append(line)
    if not any(line.startswith("ssl_certificate ") for line in lines):
        raise SystemExit(f"no ssl_certificate in /etc/nginx/conf.d/{APP}.conf: is the demo's profile https?")
    return "\n".join("    " + line for line in lines)


def install_granian(container, version):
    """granian in a virtualenv of its own that sees the release's packages (a .pth
    file naming the release's site-packages): the release itself stays as deployed."""
    code = f"/srv/{APP}/current"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = docker_exec(container, f"{code}/venv/bin/python -c {shlex.quote(purelib)}").stdout.strip()
    venv = "/opt/fd-bench-granian"
    docker_exec(container, f"""set -e
        {venv}/bin/granian --version 2>/dev/null | grep -qF {version} || {{
          rm -rf {venv}
          python3 -m venv {venv}
          {venv}/bin/pip install -q granian=={version}
        }}
        echo {shlex.quote(site)} > "$({venv}/bin/python -c {shlex.quote(purelib)})/fd-bench-release.pth"
        """, timeout=900)


def start_comparisons(container, threads=4, granian_version=GRANIAN_VERSION, keepalive_backends=True):
    """The comparisons' servers (keepalive_backends: also gthread, granian and their TLS
    blocks; bench/tuning.py runs its own on 5003-5009)."""
    code = f"/srv/{APP}/current"
    static = docker_exec(container, f"readlink -f {code}/hello/static").stdout.strip()
    conf = f"/etc/{APP}/gunicorn.conf.py"
    # The entry point the deployed gunicorn loads (gunicorn.conf.py's wsgi_app) and
    # where it imports it from, for granian; and its number of processes.
    settings = dict(re.findall(r'^(wsgi_app|pythonpath|workers) = "?([^"\n]*)"?$',
                               docker_exec(container, f"cat {conf}").stdout, re.M))
    if "wsgi_app" not in settings:
        raise SystemExit(f"no wsgi_app in {conf}")
    cpus = docker_exec(container, "nproc").stdout.strip()
    if keepalive_backends:
        install_granian(container, granian_version)
    # As the app user, with the app's environment files, like the service.
    run = (f"systemd-run --uid={APP} --property=WorkingDirectory={code} "
           f"--property=EnvironmentFile=/etc/{APP}/app.env --property=EnvironmentFile=/etc/{APP}/secret.env")
    granian_env = f"--setenv=PYTHONPATH={settings['pythonpath']} " if settings.get("pythonpath") else ""
    commands = f"""
        {run} --unit=fd-bench-dev {code}/venv/bin/python -m flask --app hello.wsgi:app run --host 127.0.0.1 --port 5001
        {run} --unit=fd-bench-gunicorn {code}/venv/bin/gunicorn --config {conf} --bind 127.0.0.1:5002 \
          --access-logfile -
        """
    site = BENCH_SITE % {"static": static, "app": APP, "proxy": PROXY_DIRECTIVES}
    if keepalive_backends:
        commands += f"""
        {run} --unit=fd-bench-gthread {code}/venv/bin/gunicorn --config {conf} --bind 127.0.0.1:5013 \
          --worker-class gthread --threads {threads} --keep-alive 5
        {run} {granian_env}--unit=fd-bench-granian /opt/fd-bench-granian/bin/granian --interface wsgi \
          --host 127.0.0.1 --port 5014 --workers {cpus} --blocking-threads {threads} {settings['wsgi_app']}
        """
        proxy = {"proxy": PROXY_DIRECTIVES, "tls": site_tls_directives(container)}
        site += (BENCH_TLS_SITE % dict(proxy, name="gthread", backend=5013, port=9443)
                 + BENCH_TLS_SITE % dict(proxy, name="granian", backend=5014, port=9444))
    docker_exec(container, commands)
    docker_exec(container, f"cat > /etc/nginx/conf.d/zz-bench.conf <<'EOF'\n{site}\nEOF\n"
                "nginx -t -q && systemctl reload nginx")
    wait_until_answering(container, (5001, 5002, 8081) + ((5013, 5014) if keepalive_backends else ()), "/version")
    return settings.get("workers", "?")


def wait_until_answering(container, ports, path):
    """Each port on 127.0.0.1 answers path with a 2xx/3xx within 30 s."""
    for port in ports:
        for _ in range(60):
            probe = ("python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "
                     f"http://127.0.0.1:{port}{path}")
            if docker_exec(container, probe, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def stop_comparisons(container):
    docker_exec(container, "systemctl stop fd-bench-dev fd-bench-gunicorn fd-bench-gthread fd-bench-granian "
                "2>/dev/null; "
                "rm -f /etc/nginx/conf.d/zz-bench.conf; nginx -t -q && systemctl reload nginx",
                check=False)


def run_wrk(container, url, connections, duration, header=None):
    """wrk -t2 inside the container, parsed; header: one extra request header."""
    extra = f"-H '{header}' " if header else ""
    out = docker_exec(container, f"ulimit -n 65536; wrk -t2 -c{connections} -d{duration}s "
                      f"--timeout 5s --latency {extra}{url}", timeout=duration + 60).stdout
    if "Requests/sec" not in out:
        print(out)
        raise SystemExit(f"wrk printed no result for {url}")
    return wrk_output.parse(out)


def run_h2load(container, url, connections, duration):
    """h2load -t2 inside the container over HTTP/2 (one request at a time per
    connection, like wrk), parsed with the per-request log for its percentiles."""
    log = "/tmp/fd-bench-h2load.log"
    out = docker_exec(container, f"ulimit -n 65536; h2load -t2 -c{connections} -D {duration} "
                      f"--log-file={log} {url}", timeout=duration + 60, check=False).stdout
    if "req/s" not in out:
        print(out)
        raise SystemExit(f"h2load printed no result for {url}")
    # (nginx's keepalive_requests, 1000: the most a connection carries.)
    result = h2load_output.parse(out, docker_exec(container, f"cat {log}; rm -f {log}").stdout,
                                 max_requests=connections * 1000)
    if result["protocol"] != "h2":
        raise SystemExit(f"h2load spoke {result['protocol']} to {url}, not HTTP/2")
    return result


def measure(container, name, url, connections, duration):
    if name.endswith("HTTP/2"):
        return run_h2load(container, url, connections, duration)
    return run_wrk(container, url, connections, duration)


def table(results, connections):
    lines = ["| target | " + " | ".join(f"{c} conn: req/s, p50, p99, errors" for c in connections) + " |",
             "| --- |" + " --- |" * len(connections)]
    for name, _ in TARGETS:
        cells = []
        for c in connections:
            r = results[(name, c)]
            p50 = f"{r['p50_ms']:.1f} ms" if r["p50_ms"] is not None else "-"
            p99 = f"{r['p99_ms']:.1f} ms" if r["p99_ms"] is not None else "-"
            mark = "*" if r.get("ended_early") else ""
            cells.append(f"{r['rps']:.0f}{mark}, {p50}, {p99}, {r['errors']} ({r['timeouts']} timeouts)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results, connections, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install matplotlib)")
        return False
    names = [name for name, _ in TARGETS]
    fig, ax = plt.subplots(figsize=(12, 6))
    width = 0.8 / len(connections)
    for i, c in enumerate(connections):
        ax.bar([x + i * width for x in range(len(names))], [results[(n, c)]["rps"] for n in names],
               width, label=f"{c} connections")
    ax.set_xticks([x + width * (len(connections) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels(names, rotation=20, ha="right")
    # Log scale: the static file's rate is 7 to 30 times anything proxied.
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log scale)")
    ax.set_title("flaskdeploy: requests/s by target (wrk and h2load, same host)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def summarize(results, low, high):
    """The comparisons #33 asks for, from one run's results: lines of text."""
    def rps(name, c=low):
        return results[(name, c)]["rps"]
    dev = rps(DEV)
    best = max((GTHREAD_HTTPS, GRANIAN_HTTPS, STACK_HTTPS), key=rps)
    return [
        f"- nginx with TLS in front of gunicorn gthread (upstream keep-alive) at {low} connections: "
        f"{100 * (1 - rps(GTHREAD_HTTPS) / rps(GTHREAD)):.0f}% below gthread alone "
        f"({rps(GTHREAD_HTTPS):.0f} against {rps(GTHREAD):.0f} req/s)",
        f"- nginx with TLS in front of granian (upstream keep-alive) at {low} connections: "
        f"{100 * (1 - rps(GRANIAN_HTTPS) / rps(GRANIAN)):.0f}% below granian alone "
        f"({rps(GRANIAN_HTTPS):.0f} against {rps(GRANIAN):.0f} req/s)",
        f"- through nginx with TLS at {low} connections, against the Flask dev server ({dev:.0f} req/s): "
        f"the default (gunicorn sync) {rps(STACK_HTTPS) / dev:.1f}x, gthread {rps(GTHREAD_HTTPS) / dev:.1f}x, "
        f"granian {rps(GRANIAN_HTTPS) / dev:.1f}x (the best: {best})",
        f"- granian against gunicorn gthread, both behind nginx with TLS, at {low} connections: "
        f"{100 * (rps(GRANIAN_HTTPS) / rps(GTHREAD_HTTPS) - 1):+.0f}%; at {high}: "
        f"{100 * (rps(GRANIAN_HTTPS, high) / rps(GTHREAD_HTTPS, high) - 1):+.0f}%",
        f"- errors at {high} connections: dev server {results[(DEV, high)]['errors']}, "
        f"deployed stack (HTTPS) {results[(STACK_HTTPS, high)]['errors']}, "
        f"gthread behind nginx {results[(GTHREAD_HTTPS, high)]['errors']}, "
        f"granian behind nginx {results[(GRANIAN_HTTPS, high)]['errors']}",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--container", default="flaskdeploy-demo")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per process of the gthread and granian backends")
    parser.add_argument("--granian-version", default=GRANIAN_VERSION)
    args = parser.parse_args()

    ensure_demo(args.container)
    cpus = docker_exec(args.container, "nproc").stdout.strip()
    results = {}
    workers = start_comparisons(args.container, args.threads, args.granian_version)
    try:
        for name, url in TARGETS:
            for c in args.connections:
                results[(name, c)] = r = measure(args.container, name, url, c, args.duration)
                print(f"{name:46} {c:5} conn: {r['rps']:9.0f} req/s  p50 {r['p50_ms'] or 0:7.1f} ms  "
                      f"p99 {r['p99_ms'] or 0:8.1f} ms  errors {r['errors']} ({r['timeouts']} timeouts)",
                      flush=True)
    finally:
        stop_comparisons(args.container)

    RESULTS.mkdir(parents=True, exist_ok=True)
    md = table(results, args.connections)
    low, high = args.connections[0], args.connections[-1]
    summary = (
        f"\nwrk -t2 -d{args.duration}s --timeout 5s (HTTP/2: h2load -t2 -D {args.duration}) inside the server"
        f" ({cpus} CPUs; gunicorn {workers} workers, gthread {workers} x {args.threads} threads,"
        f" granian {args.granian_version} {cpus} x {args.threads} blocking threads).\n\n"
        + "\n".join(summarize(results, low, high)) + "\n")
    if any(r.get("ended_early") for r in results.values()):
        summary += ("- *: nginx closed h2load's connections after keepalive_requests (1000) before the"
                    " run's end (h2load opens no new one): the rate while they lasted, from its log\n")
    (RESULTS / "serving.md").write_text(md + "\n" + summary)
    print()
    print(md)
    print(summary)
    if chart(results, args.connections, RESULTS / "serving.png"):
        print(f"chart: {RESULTS / 'serving.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
