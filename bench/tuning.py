#!/usr/bin/env python3
"""Tuning runs: what each default of the stack buys, measured one change at a time
against the deployed configuration, and gunicorn against uWSGI and Waitress.

A benchmark, not a test: it prints figures and asserts nothing. Like bench/serving.py
it runs wrk inside the demo server (molecule/scripts/demo.sh; started if it is not
running), so every request goes to 127.0.0.1 there. For the length of the run it starts:
  - WSGI servers on 127.0.0.1:5002-5009, each running the deployed release as the app
    user: gunicorn with the deployed gunicorn.conf.py and one setting changed (workers,
    worker class and threads, access log), uWSGI (Debian's uwsgi-core, installed if
    missing) and Waitress (the role's pinned version, installed into /opt/fd-bench);
  - nginx server blocks on 127.0.0.1:8081-8088: the site's proxy and static settings,
    each with one thing changed (upstream keep-alive, unix socket or TCP, proxy
    buffering, gzip, open_file_cache, sendfile), and a 64 KiB stylesheet in
    /opt/fd-bench/static for gzip.
It removes all of that at the end. Writes bench/results/tuning.md.

    bench/tuning.py [--duration 5] [--container flaskdeploy-demo]
"""

import argparse
import sys

import serving
from serving import APP, RESULTS, docker_exec

CODE = f"/srv/{APP}/current"
WAITRESS_VERSION = "3.0.2"  # roles/wsgi/defaults/main.yml: wsgi_waitress_version

# name, gunicorn.conf.py overrides (the deployed file, from the https profile: no
# access log, is read first), port
GUNICORN_VARIANTS = [
    ("gunicorn: sync, 2 workers (1 per CPU), access log", 'workers = 2\naccesslog = "-"', 5003),
    ("gunicorn: sync, 9 workers (4 per CPU + 1), access log", 'workers = 9\naccesslog = "-"', 5004),
    ("gunicorn: gthread, 5 workers x 4 threads, access log",
     'worker_class = "gthread"\nthreads = 4\naccesslog = "-"', 5005),
    ("gunicorn: sync, 5 workers, no access log (the deployed config behind nginx)", "accesslog = None", 5006),
]

NGINX = """
# flaskdeploy bench/tuning.py: removed after the run.
upstream fd_bench_no_keepalive { server unix:/run/%(app)s/wsgi.sock fail_timeout=0; }
upstream fd_bench_tcp { server 127.0.0.1:5006; keepalive 16; }
%(proxy_servers)s
server {
    listen 127.0.0.1:8086;
    location /static/ { alias %(static)s/; expires 7d; access_log off;
                        open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s; }
}
server {
    listen 127.0.0.1:8087;
    location /static/ { alias %(static)s/; expires 7d; access_log off; sendfile off; }
}
server {
    listen 127.0.0.1:8088;
    location /static/ { alias /opt/fd-bench/static/; expires 7d; access_log off; }
}
server {
    listen 127.0.0.1:8089;
    gzip_types text/css;
    gzip_vary on;
    location /static/ { alias /opt/fd-bench/static/; expires 7d; access_log off; }
}
"""
PROXY_SERVER = """
server {
    listen 127.0.0.1:%(port)d;
    %(server_extra)s
    location / {
        proxy_pass http://%(upstream)s;
%(proxy)s
        %(location_extra)s
    }
}
"""
# port, upstream, extra server lines, extra location lines
PROXY_VARIANTS = [
    (8082, "fd_bench_no_keepalive", "", ""),
    (8083, "fd_bench_tcp", "", ""),
    (8084, f"{APP}_wsgi", "", "proxy_buffering off;"),
    (8085, f"{APP}_wsgi", "gzip off;", ""),
    (8090, f"{APP}_wsgi", "access_log off;", ""),
    (8091, f"{APP}_wsgi", "access_log /var/log/nginx/access.log combined buffer=64k flush=1s;", ""),
]

GZIP = "Accept-Encoding: gzip"
# group, name, url, header, connection counts
RUNS = [
    ("WSGI server, alone (no nginx)", "gunicorn: sync, 5 workers, access log (as the wsgi profile)",
     "http://127.0.0.1:5002/version", None, (64, 1024)),
    *[("WSGI server, alone (no nginx)", name, f"http://127.0.0.1:{port}/version", None, (64, 1024))
      for name, _, port in GUNICORN_VARIANTS],
    ("WSGI server, alone (no nginx)", "uWSGI: 5 processes, request log (the role's uwsgi.ini)",
     "http://127.0.0.1:5008/version", None, (64, 1024)),
    ("WSGI server, alone (no nginx)", "Waitress: 8 threads (the role's default)",
     "http://127.0.0.1:5009/version", None, (64, 1024)),
    ("nginx -> gunicorn", "deployed: unix socket, upstream keepalive 16, buffering on, nginx logs",
     "http://127.0.0.1:8081/version", None, (64,)),
    ("nginx -> gunicorn", "no upstream keepalive", "http://127.0.0.1:8082/version", None, (64,)),
    ("nginx -> gunicorn", "TCP 127.0.0.1 instead of the unix socket",
     "http://127.0.0.1:8083/version", None, (64,)),
    ("nginx -> gunicorn", "proxy_buffering off", "http://127.0.0.1:8084/version", None, (64,)),
    ("nginx -> gunicorn", "nginx access log off", "http://127.0.0.1:8090/version", None, (64,)),
    ("nginx -> gunicorn", "nginx access log buffered (64k, flushed every second)",
     "http://127.0.0.1:8091/version", None, (64,)),
    ("nginx -> gunicorn, HTML page", "gzip on (Debian's nginx.conf), client accepts gzip",
     "http://127.0.0.1:8081/", GZIP, (64,)),
    ("nginx -> gunicorn, HTML page", "gzip off", "http://127.0.0.1:8085/", GZIP, (64,)),
    ("nginx static file", "sendfile on, no open_file_cache (Debian's nginx)",
     "http://127.0.0.1:8081/static/style.css", None, (64,)),
    ("nginx static file", "open_file_cache on (the role's default)",
     "http://127.0.0.1:8086/static/style.css", None, (64,)),
    ("nginx static file", "sendfile off", "http://127.0.0.1:8087/static/style.css", None, (64,)),
    ("nginx static file, 64 KiB stylesheet", "deployed (gzip only for text/html), client accepts gzip",
     "http://127.0.0.1:8088/static/big.css", GZIP, (64,)),
    ("nginx static file, 64 KiB stylesheet", "gzip for text/css, client accepts gzip",
     "http://127.0.0.1:8089/static/big.css", GZIP, (64,)),
]


def start(container):
    serving.start_comparisons(container, keepalive_backends=False)  # dev 5001, gunicorn 5002, nginx 8081
    docker_exec(container, f"""
        command -v uwsgi-core >/dev/null || (apt-get update -qq &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq uwsgi-core uwsgi-plugin-python3 >/dev/null)
        [ -d /opt/fd-bench/waitress ] || {CODE}/venv/bin/pip install -q --target /opt/fd-bench/waitress \
          waitress=={WAITRESS_VERSION}
        mkdir -p /opt/fd-bench/static && chmod 0755 /opt/fd-bench /opt/fd-bench/static
        # A stylesheet of a real site's size (64 KiB of varied rules, which compress
        # about as well as real CSS does).
        python3 -c 'import random; random.seed(7); print("".join(
          ".c%d-%x {{ margin: %dpx %dpx; color: #%06x; font: %dpx/1.%d sans-serif }}\\n" % (
          i, random.getrandbits(24), random.randrange(40), random.randrange(40), random.getrandbits(24),
          random.randrange(9, 30), random.randrange(9)) for i in range(2000))[:65536], end="")' \
          > /opt/fd-bench/static/big.css
        chmod 0644 /opt/fd-bench/static/big.css
        """, timeout=900)
    run = (f"systemd-run --uid={APP} --property=WorkingDirectory={CODE} "
           f"--property=EnvironmentFile=/etc/{APP}/app.env --property=EnvironmentFile=/etc/{APP}/secret.env")
    commands = []
    for _, overrides, port in GUNICORN_VARIANTS:
        config = f"/opt/fd-bench/gunicorn-{port}.conf.py"
        docker_exec(container, f"cat > {config} <<'EOF'\n"
                    f"exec(open('/etc/{APP}/gunicorn.conf.py').read())\n{overrides}\nEOF\nchmod 0644 {config}")
        commands.append(f"{run} --unit=fd-bench-{port} {CODE}/venv/bin/gunicorn --config {config} "
                        f"--bind 127.0.0.1:{port}")
    commands.append(f"{run} --unit=fd-bench-5008 /usr/bin/uwsgi-core --plugins python3 --virtualenv {CODE}/venv "
                    f"--chdir {CODE} --module hello.wsgi:app --master --processes 5 --enable-threads "
                    "--http-socket 127.0.0.1:5008 --die-on-term")
    commands.append(f"{run} --unit=fd-bench-5009 --setenv=PYTHONPATH=/opt/fd-bench/waitress:{CODE} "
                    f"{CODE}/venv/bin/python -m waitress --listen 127.0.0.1:5009 --threads 8 hello.wsgi:app")
    docker_exec(container, "\n".join(commands))

    static = docker_exec(container, f"readlink -f {CODE}/hello/static").stdout.strip()
    proxies = "".join(PROXY_SERVER % {"port": port, "upstream": upstream, "server_extra": server,
                                      "location_extra": location,
                                      "proxy": serving.PROXY_DIRECTIVES}
                      for port, upstream, server, location in PROXY_VARIANTS)
    site = NGINX % {"app": APP, "static": static, "proxy_servers": proxies}
    docker_exec(container, f"cat > /etc/nginx/conf.d/zz-bench-tuning.conf <<'EOF'\n{site}\nEOF\n"
                "nginx -t -q && systemctl reload nginx")
    serving.wait_until_answering(
        container, [p for _, _, p in GUNICORN_VARIANTS] + [5008, 5009] + [p for p, *_ in PROXY_VARIANTS], "/version")


def stop(container):
    units = " ".join(f"fd-bench-{p}" for p in [p for _, _, p in GUNICORN_VARIANTS] + [5008, 5009])
    docker_exec(container, f"systemctl stop {units} 2>/dev/null; rm -f /etc/nginx/conf.d/zz-bench-tuning.conf",
                check=False)
    serving.stop_comparisons(container)


def describe_errors(r):
    """0, or the count with its kinds: "53735 (read 53735)"."""
    kinds = [f"{kind} {n}" for kind, n in r["socket_errors"].items() if n]
    if r["non_2xx_3xx"]:
        kinds.append(f"non-2xx/3xx {r['non_2xx_3xx']}")
    return f"{r['errors']} ({', '.join(kinds)})" if kinds else "0"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--container", default="flaskdeploy-demo")
    parser.add_argument("--only", help="run only the configurations whose name contains this "
                        "(printed, not written to bench/results/tuning.md)")
    args = parser.parse_args()

    serving.ensure_demo(args.container)
    cpus = docker_exec(args.container, "nproc").stdout.strip()
    rows = []
    start(args.container)
    try:
        for group, name, url, header, counts in RUNS:
            if args.only and args.only not in name:
                continue
            for c in counts:
                r = serving.run_wrk(args.container, url, c, args.duration, header)
                per_response = r["bytes_per_s"] / r["rps"] if r["bytes_per_s"] and r["rps"] else 0
                rows.append((group, name, c, r, per_response))
                print(f"{group[:26]:26} | {name[:52]:52} {c:5} conn: {r['rps']:9.0f} req/s  "
                      f"p50 {r['p50_ms'] or 0:7.1f} ms  p99 {r['p99_ms'] or 0:8.1f} ms  "
                      f"{per_response:6.0f} B/resp  errors {describe_errors(r)}", flush=True)
    finally:
        stop(args.container)

    lines = [f"wrk -t2 -d{args.duration}s --timeout 5s inside the server ({cpus} CPUs), "
             "one setting changed per row.", "",
             "| group | configuration | connections | req/s | p50 | p99 | bytes/response | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group, name, c, r, per_response in rows:
        lines.append(f"| {group} | {name} | {c} | {r['rps']:.0f} | {r['p50_ms'] or 0:.1f} ms | "
                     f"{r['p99_ms'] or 0:.1f} ms | {per_response:.0f} | {describe_errors(r)} |")
    if not args.only:  # a partial run leaves the full table alone
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "tuning.md").write_text("\n".join(lines) + "\n")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
