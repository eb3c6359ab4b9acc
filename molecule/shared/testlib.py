"""Helpers shared by the molecule scenarios' testinfra tests.

Traffic goes only to the scenario's own containers, on the docker network the
scenario created, addressed by their IPs on that network.
"""

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]


def ephemeral_dir():
    """The scenario's molecule ephemeral directory (prepare.yml leaves inputs there)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def container(name):
    return docker.from_env().containers.get(name)


def reboot(name, timeout=120):
    """Reboot a scenario's systemd container: systemd (PID 1) halts in order on
    SIGRTMIN+3 (docker's SIGTERM it ignores), the container stops, then starts again
    and boots; returns once systemd says it is up."""
    server = container(name)
    server.kill(signal="SIGRTMIN+3")
    server.wait(timeout=60)
    server.start()
    wait_for(lambda: server.exec_run("systemctl is-system-running").output.decode().strip()
             in ("running", "degraded"), timeout=timeout, what=f"{name} to boot")
    return server


def systemd_container(name, hostname, network=None, image="flaskdeploy/debian:12", capabilities=("SYS_ADMIN",)):
    """Start a Debian container that boots systemd, like the scenarios' own (replacing
    one of the same name), and wait until it has booted. The caller removes it.
    NET_ADMIN in capabilities lets a firewall load its rules."""
    client = docker.from_env()
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    server = client.containers.run(
        image, "/lib/systemd/systemd", name=name, hostname=hostname, detach=True, network=network,
        cgroupns="host", cap_add=list(capabilities), security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        tmpfs={"/run": "", "/tmp": ""})
    try:
        wait_for(lambda: server.exec_run("systemctl is-system-running").output.decode().strip()
                 in ("running", "degraded"), what=f"{name} to boot")
    except AssertionError:
        server.remove(force=True)
        raise
    return server


def own_network(name, ipv6_subnet=None):
    """Create the docker network `name` for a test's own containers (dual-stack with
    ipv6_subnet, an IPv6 network for docker to take addresses from); returns it, for
    the caller to remove, or None where it already exists (someone else's)."""
    client = docker.from_env()
    if client.networks.list(names=[name]):
        return None
    if ipv6_subnet is None:
        return client.networks.create(name)
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=ipv6_subnet)])
    return client.networks.create(name, enable_ipv6=True, ipam=ipam)


def extra_ca_certificates():
    """The controller's extra CA certificates (FLASKDEPLOY_EXTRA_CA_CERTS) that the test
    servers trust, as the scenarios' do: a TLS-intercepting proxy's, for pip."""
    return [p for p in os.environ.get("FLASKDEPLOY_EXTRA_CA_CERTS", "").split(",") if p]


def server_inventory(path, name, server_name, **hostvars):
    """Write an inventory of one app server, name, for a container a test started: its
    site answers for server_name and it trusts the controller's extra CA certificates.
    Returns its path."""
    path.write_text(json.dumps({"appservers": {"hosts": {name: {
        "nginx_server_names": [server_name], "ca_trust_certificates": extra_ca_certificates(),
        **hostvars}}}}))
    return str(path)


def network_addresses(name):
    """(container IP, gateway IP) of the container on its first network.

    The gateway is the controller's side of that network: the client address
    nginx and the app must see for requests the tests send.
    """
    net = _first_network(name)
    return net["IPAddress"], net["Gateway"]


def ipv6_address(name):
    """The container's IPv6 address on its first network ("" on an IPv4-only one)."""
    return _first_network(name)["GlobalIPv6Address"]


def _first_network(name):
    """Docker's settings of the container on its first network."""
    return next(iter(container(name).attrs["NetworkSettings"]["Networks"].values()))


def pings6(address, timeout=3):
    """Whether address answers an ICMPv6 echo request (ping) from the controller
    within timeout seconds (a raw socket: root)."""
    import socket
    import struct

    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        # The kernel fills in an ICMPv6 checksum.
        sock.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"flaskdeploy", (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, sender = sock.recvfrom(1500)
            except TimeoutError:
                return False
            if data[0] == 129 and sender[0] == address and struct.unpack("!H", data[4:6])[0] == ident:
                return True
        return False


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


class _TLSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to an IP that verifies the certificate for server_name."""

    def __init__(self, address, port, server_name, context, timeout):
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


_TLS_CONTEXTS = {}


def _tls_context(cafile):
    """A client TLS context that trusts cafile only (None: checks nothing), made once
    per content of the file: making one costs 0.5 ms with a CA file, 30 ms without
    (it loads the system's CAs), and the load loops send thousands of requests on
    two cores. Each request still makes a new connection and a full handshake."""
    key = Path(cafile).read_bytes() if cafile else None
    if key not in _TLS_CONTEXTS:
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXTS[key] = ctx
    return _TLS_CONTEXTS[key]


def request(address, path, scheme="https", port=None, method="GET", body=None,
            headers=None, cafile=None, server_name=None, timeout=10):
    """One HTTP(S) request to address; no redirects are followed.

    server_name is sent as SNI and Host header (by default the address). With cafile,
    the server's certificate must chain to cafile and be valid for server_name;
    without, it is not checked.
    """
    headers = dict(headers or {})
    if server_name:
        headers.setdefault("Host", server_name)
    if scheme == "https":
        conn = _TLSConnection(address, port or 443, server_name or address, _tls_context(cafile), timeout)
    else:
        conn = http.client.HTTPConnection(address, port or 80, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server answered (e.g. 413) and closed before the whole body was
            # sent: its answer is still there to read.
            pass
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def _tls_socket(address, port, server_name, cafile, timeout, alpn=None):
    """A TLS connection to address checked against cafile for server_name (a context
    of its own when ALPN protocols are offered)."""
    import socket

    if alpn:
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(alpn)
    else:
        context = _tls_context(cafile)
    return context.wrap_socket(socket.create_connection((address, port), timeout=timeout),
                               server_hostname=server_name)


def http2_request(address, path, server_name, cafile, port=443, timeout=10):
    """One GET offering HTTP/2 and HTTP/1.1 (ALPN): (the protocol the server chose,
    a Response, or None when it is not h2)."""
    import h2.config
    import h2.connection
    import h2.events

    with _tls_socket(address, port, server_name, cafile, timeout, alpn=["h2", "http/1.1"]) as sock:
        protocol = sock.selected_alpn_protocol()
        if protocol != "h2":
            return protocol, None
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "GET"), (":authority", server_name), (":scheme", "https"),
                                   (":path", path)], end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, body, ended = {}, b"", False
        while not ended:
            data = sock.recv(65535)
            if not data:
                raise ConnectionError("the server closed the HTTP/2 connection before the answer ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
        status = int(headers.pop(":status"))
        return protocol, Response(status, headers, body)


class WebSocket:
    """A WebSocket client (RFC 6455, text messages), enough for the tests: over TLS
    checked against cafile, or plain (scheme "http", port 80). status is the
    handshake's (101 when it is open)."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, address, path, server_name, cafile=None, port=None, timeout=10, scheme="https"):
        import base64
        import hashlib
        import socket

        if scheme == "https":
            self.sock = _tls_socket(address, port or 443, server_name, cafile, timeout)
        else:
            self.sock = socket.create_connection((address, port or 80), timeout=timeout)
        host = server_name or address
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1]) if status_line else None
        self.headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == accept, self.headers

    def __repr__(self):
        return f"WebSocket(status={self.status}, headers={self.headers})"

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes([0x81, 0x80 | size])
        elif size < 65536:
            header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, size):
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the WebSocket connection was closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def receive(self):
        """The next text message; ConnectionError when the server closes."""
        first, second = self._read(2)
        opcode, size = first & 0x0F, second & 0x7F
        if size == 126:
            size = int.from_bytes(self._read(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read(8), "big")
        payload = self._read(size)
        if opcode == 0x8:
            raise ConnectionError(f"the server closed the WebSocket ({payload[:2].hex()})")
        assert opcode == 0x1 and first & 0x80, f"not one text frame: opcode {opcode}"
        return payload.decode()

    def close(self):
        try:
            self.sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        except OSError:
            pass
        self.sock.close()


def event_stream(address, path, server_name, cafile=None, port=None, timeout=30, scheme="https"):
    """GET an event stream (HTTP/1.1) over TLS, or plain with scheme "http": each
    event's id with the second it arrived (time.monotonic), read as the bytes come,
    until the answer ends."""
    import socket

    arrivals = []
    if scheme == "https":
        connection = _tls_socket(address, port or 443, server_name, cafile, timeout)
    else:
        connection = socket.create_connection((address, port or 80), timeout=timeout)
    with connection as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name or address}\r\nAccept: text/event-stream\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            for found in re.findall(rb"^id: (\d+)\n", data, re.M)[len(arrivals):]:
                arrivals.append((int(found), time.monotonic()))
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return arrivals


class RetriedWarning(UserWarning):
    """A check passed on its second try: CI's summary lists each (molecule/scripts/test.sh)."""


def wait_for(predicate, timeout=30, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def main_pid(host, unit):
    return int(host.check_output(f"systemctl show -p MainPID --value {unit}"))


def child_pids(host, pid):
    out = host.run(f"ps -o pid= --ppid {pid}").stdout.split()
    return sorted(int(p) for p in out)


def playbook_command(playbook, limit, extra_vars=None, options=(), inventory=None, env=None):
    """(argv, environment) of ansible-playbook running a playbook of this repo against
    the scenario's inventory (or another). env: variables to set in its environment
    (None: removed)."""
    inventory = inventory or os.environ["MOLECULE_INVENTORY_FILE"]
    cmd = ["ansible-playbook", "-i", inventory, "--limit", limit, *options, str(REPO / playbook)]
    for key, value in (extra_vars or {}).items():
        cmd += ["-e", json.dumps({key: value})]
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                      ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1",
                      ANSIBLE_FORCE_COLOR="0")
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return cmd, environment


def run_playbook(playbook, limit, extra_vars=None, options=(), timeout=600, inventory=None, env=None):
    """Run a playbook of this repo (see playbook_command); the completed process."""
    cmd, environment = playbook_command(playbook, limit, extra_vars, options, inventory, env)
    start = time.monotonic()
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environment,
                              cwd=REPO)
    finally:
        record_playbook_time(playbook, time.monotonic() - start)


def record_playbook_time(playbook, seconds):
    """CI's time goes to the tests' playbook runs: with FLASKDEPLOY_PLAYBOOK_TIMES set
    (molecule/scripts/test.sh), each adds a line there (test, playbook, seconds) for the
    run's summary of where the time went."""
    path = os.environ.get("FLASKDEPLOY_PLAYBOOK_TIMES")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, "playbook": str(playbook), "seconds": round(seconds, 1)}) + "\n")


def playbook_killed_at(playbook, limit, extra_vars, task, timeout=300):
    """Run a playbook of this repo, its controller killed (SIGKILL, the whole process
    group) as the run reaches `task` (a TASK header's start); the output until then."""
    cmd, env = playbook_command(playbook, limit, extra_vars, env={"PYTHONUNBUFFERED": "1"})
    start = time.monotonic()
    run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    timer = threading.Timer(timeout, os.killpg, (run.pid, signal.SIGKILL))
    timer.start()
    lines = []
    try:
        for line in run.stdout:
            lines.append(line)
            if line.startswith(f"TASK [{task}"):
                os.killpg(run.pid, signal.SIGKILL)
                break
    finally:
        timer.cancel()
        run.wait()
    output = "".join(lines)
    record_playbook_time(playbook, time.monotonic() - start)
    assert run.returncode == -signal.SIGKILL and lines[-1].startswith(f"TASK [{task}"), output[-3000:]
    return output


def recap(output, host):
    """The PLAY RECAP counts of host in an ansible-playbook output: {"ok": "12", "changed": "0", ...}."""
    line = next(l for l in output.splitlines() if l.startswith(host) and "ok=" in l)
    return dict(part.split("=") for part in line.split(":", 1)[1].split())


# The app role's task that switches `current` (and prunes in the same call).
SWITCH_TASK = "app : Point current at the release, then remove old releases and unused virtualenvs"


def task_status(output, task):
    """The first status line under a task's header: ok, changed, skipping or failed."""
    match = re.search(r"^TASK \[" + re.escape(task) + r"\].*\n(?:.*\n)*?(ok|changed|skipping|failed)",
                      output, re.M)
    return match.group(1) if match else None


def failed_task(output):
    """The TASK header (role : name) of the first task an ansible-playbook output
    reports as failed, or None."""
    task = None
    for line in output.splitlines():
        header = re.match(r"^TASK \[(.*)\] \*+", line)
        if header:
            task = header.group(1)
        elif line.startswith(("fatal: [", "[ERROR]: Task failed")) and task is not None:
            return task
    return None


def changed_tasks(output):
    """The TASK headers of the tasks an ansible-playbook output reports as changed."""
    changed, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") and task and task not in changed:
            changed.append(task)
    return changed


def security_exposure(host, unit):
    """systemd-analyze's overall exposure score of a unit (0 safest, 10 exposed)."""
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    line = next(l for l in out.splitlines() if "Overall exposure level" in l)
    return float(line.split(":", 1)[1].split()[0])


def mount_options(host, pid):
    """The mount points a process sees, with their options (from its mountinfo)."""
    options = {}
    for line in host.check_output(f"cat /proc/{pid}/mountinfo").splitlines():
        fields = line.split()
        options[fields[4]] = fields[5].split(",")
    return options


def assert_sandboxed(host, unit, writable):
    """The unit's sandbox: a low exposure score, no capabilities, a read-only system
    and only `writable` mounted read-write (read from the main process's mounts)."""
    assert security_exposure(host, unit) <= 2.0
    pid = main_pid(host, unit)
    assert host.check_output(f"grep CapEff /proc/{pid}/status").split()[1] == "0" * 16
    options = mount_options(host, pid)
    assert "ro" in options["/"]
    assert "rw" in options[writable]


def assert_service_sandboxed(host, unit, writable, limit=5.0):
    """A root service under a sandbox drop-in (nginx, PostgreSQL): its exposure score
    at most `limit`, its main process with no new privileges, a seccomp filter and a
    capability bounding set short of root's, a read-only system but `writable`."""
    assert security_exposure(host, unit) <= limit
    pid = main_pid(host, unit)
    status = dict(line.split(":\t", 1) for line in host.check_output(f"cat /proc/{pid}/status").splitlines()
                  if ":\t" in line)
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2"), status
    full = host.check_output("grep CapBnd /proc/1/status").split()[1]
    assert int(status["CapBnd"], 16) & ~int(full, 16) == 0 and status["CapBnd"] != full, status
    options = mount_options(host, pid)
    assert "ro" in options["/"]
    for path in writable:
        assert "rw" in options[path], (path, options.get(path))


class LoadLoop:
    """A bounded request loop in background threads, for `with` blocks.

    `clients` threads each send requests (one connection each) with
    `send()` until the block ends, `max_requests` were sent in all, or
    `max_seconds` passed; each waits `interval` seconds between its requests,
    so that the loop probes the server densely (4 clients: one request every
    15 ms or so, each on a new TLS connection) without taking the CPU the
    deploy it watches needs (CI has two cores for everything). Every answer that
    is not 2xx and every exception is a failure; `seen` counts the values
    `label(response)` returned.
    """

    def __init__(self, send, clients=4, max_requests=20000, max_seconds=300,
                 label=lambda response: None, interval=0.05):
        import collections
        import threading

        self._send = send
        self._clients = clients
        self._max_requests = max_requests
        self._max_seconds = max_seconds
        self._label = label
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self.sent = 0
        self.failures = []
        self.seen = collections.Counter()
        self.worst_latency = 0.0

    def _run(self):
        deadline = time.monotonic() + self._max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.sent >= self._max_requests:
                    return
                self.sent += 1
            started = time.monotonic()
            try:
                response = self._send()
                outcome = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                label = self._label(response) if outcome is None else None
            except Exception as exc:  # noqa: BLE001 - every error is a failed request
                outcome, label = repr(exc), None
            elapsed = time.monotonic() - started
            with self._lock:
                self.worst_latency = max(self.worst_latency, elapsed)
                if outcome is not None:
                    self.failures.append(outcome)
                else:
                    self.seen[label] += 1
            self._stop.wait(self._interval)

    @property
    def running(self):
        """Still sending: neither max_requests nor max_seconds reached."""
        return any(thread.is_alive() for thread in self._threads)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._max_seconds)
        return False

    def __repr__(self):
        return (f"LoadLoop(sent={self.sent}, failures={len(self.failures)} {self.failures[:5]}, "
                f"seen={dict(self.seen)}, worst_latency={self.worst_latency:.2f}s)")


def run_under_load(loop, action, until_seen=None, warmup=200, after=200):
    """Runs action() inside the load loop and returns its result.

    The loop first sends `warmup` requests; it must still be running when action
    returns (it outlasted the action), and then sends `after` more (with
    until_seen: until `after` answers were labelled until_seen).
    """
    with loop:
        wait_for(lambda: loop.sent > warmup, what="load before the action")
        result = action()
        assert loop.running, loop
        sent = loop.sent
        if until_seen is None:
            wait_for(lambda: loop.sent > sent + after, what="load after the action")
        else:
            wait_for(lambda: loop.seen[until_seen] > after, what=f"answers from {until_seen}")
    return result


def sample_app_copy(target, version, replace=(), requirements_extra=""):
    """A copy of sample_app/ at target reporting `version`, with text replacements
    in hello/__init__.py and lines added to requirements.txt."""
    import shutil

    shutil.copytree(REPO / "sample_app", target,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    init = Path(target) / "hello" / "__init__.py"
    text = init.read_text().replace('__version__ = "1.0.0"', f'__version__ = "{version}"')
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    init.write_text(text)
    if requirements_extra:
        with open(Path(target) / "requirements.txt", "a", encoding="utf-8") as handle:
            handle.write(requirements_extra)
    return str(target)


def csrf_token(web, path="/"):
    """The CSRF token of the form on a page (Flask-WTF's hidden field), fetched with
    the `web` fixture's client (which keeps the session cookie it goes with)."""
    page = web(path)
    assert page.status == 200, page.text
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)


def post_form(web, path, fields, referer=None):
    """A form posted as a browser does: the CSRF token of / first, the Referer of the site."""
    token = csrf_token(web)
    return web(path, method="POST", form={"csrf_token": token, **fields},
               headers={"Referer": referer or web.origin + "/"})
