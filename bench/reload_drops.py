#!/usr/bin/env python3
"""Requests a gunicorn loses while it reloads (HUP), by worker class and version.

A benchmark, not a test: it prints figures and asserts nothing. For each gunicorn
executable given, it starts gunicorn on 127.0.0.1 (a trivial WSGI app, 2 workers)
with the worker class asked, runs a few client threads that each send one request
per connection (as nginx does with wsgi_gunicorn_keepalive 0), sends HUP every
--interval seconds --hups times, and counts the requests that failed (connection
reset or closed without an answer, or an answer other than 200). Bounded: the load
stops after --hups x --interval + 5 seconds.

    bench/reload_drops.py [--worker-class gthread] [--threads 8] [--hups 10] GUNICORN...

Measured 2026-12-05 on the CI machine (2 cores), 10 HUPs, 4 clients: gunicorn 23.0.0
gthread lost 18 and 19 of about 55000 requests, gunicorn 27.0.1 gthread 0 and 0;
the sync worker (--threads 1) lost none under either.
"""

import argparse
import http.client
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def measure(gunicorn, worker_class, threads, hups, interval, clients, port):
    workdir = tempfile.mkdtemp(prefix="fd-reload-drops-")
    Path(workdir, "dropsapp.py").write_text(APP)
    version = subprocess.run([gunicorn, "--version"], capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen(
        [gunicorn, "-w", "2", "-k", worker_class, "--threads", str(threads), "--keep-alive", "0",
         "--graceful-timeout", "5", "-b", f"127.0.0.1:{port}", "--chdir", workdir, "dropsapp:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"{gunicorn} does not answer on 127.0.0.1:{port}")
        counts = {"ok": 0, "failed": 0}
        errors = {}
        lock = threading.Lock()
        stop = time.monotonic() + hups * interval + 5

        def client():
            while time.monotonic() < stop:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/")
                    resp = conn.getresponse()
                    resp.read()
                    conn.close()
                    outcome = "ok" if resp.status == 200 else f"HTTP {resp.status}"
                except (OSError, http.client.HTTPException) as error:
                    outcome = type(error).__name__
                with lock:
                    if outcome == "ok":
                        counts["ok"] += 1
                    else:
                        counts["failed"] += 1
                        errors[outcome] = errors.get(outcome, 0) + 1

        threads_ = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads_:
            thread.start()
        for _ in range(hups):
            time.sleep(interval)
            server.send_signal(signal.SIGHUP)
        for thread in threads_:
            thread.join()
        return version, counts, errors
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gunicorn", nargs="+", help="gunicorn executables (one per version)")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--hups", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--port", type=int, default=18181)
    args = parser.parse_args()
    for gunicorn in args.gunicorn:
        version, counts, errors = measure(gunicorn, args.worker_class, args.threads, args.hups,
                                          args.interval, args.clients, args.port)
        print(f"{version:28} {args.worker_class:8} threads {args.threads:2}: {counts['ok']:7} answered, "
              f"{counts['failed']:4} failed {errors or ''} over {args.hups} HUPs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
