"""The real-time routes under each gunicorn worker class wsgi_long_lived allows
(gthread, and gevent when the app names one; gunicorn 27 has no eventlet worker):
gunicorn on a loopback port, one worker, the way the wsgi role runs it
(worker_class, threads 32, keep-alive 0 behind nginx). Several WebSockets held open at once by one worker, an
echo on each, and Server-Sent Events arriving one by one before the stream ends."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import simple_websocket

APP_DIR = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["gthread", "gevent"])
def server(request):
    port = free_port()
    env = {**os.environ, "SECRET_KEY": "test", "APP_VERSION": "w-" + request.param}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class", request.param, "--workers", "1",
         "--threads", "32", "--keep-alive", "0", "--graceful-timeout", "2",
         "--bind", f"127.0.0.1:{port}", "hello:create_app()"],
        cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn -k {request.param} did not start: {process.communicate()[0][-2000:]}")
            time.sleep(0.2)
    yield request.param, port
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_one_worker_holds_several_websockets_and_echoes_on_each(server):
    worker, port = server
    # A worker that cannot take another connection leaves a handshake unanswered:
    # the client's sockets give up after 10 s (the connect raises) instead of waiting.
    default_timeout, clients = socket.getdefaulttimeout(), []
    socket.setdefaulttimeout(10)
    try:
        for _ in range(5):
            clients.append(simple_websocket.Client.connect(f"ws://127.0.0.1:{port}/ws"))
        for n, client in enumerate(clients):
            client.send(f"hello {n}")
        for n, client in enumerate(clients):
            assert client.receive(timeout=10) == f"w-{worker}: hello {n}"
    finally:
        socket.setdefaulttimeout(default_timeout)
        for client in clients:
            client.close()


def test_server_sent_events_arrive_one_by_one(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /events?count=3&interval=0.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        stream, arrivals = connection.makefile("rb"), []
        while len(arrivals) < 3:
            line = stream.readline()
            assert line, arrivals
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert all(gap > 0.3 for gap in gaps), gaps
