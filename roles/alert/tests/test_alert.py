"""The alert script (files/usr/local/sbin/flaskdeploy-alert) run on the controller:
the operator's command gets the failed unit's facts in its environment, the URL a
JSON POST (a receiver on loopback), and a failing command or URL makes it exit 1
without printing the URL's secret part. systemctl is a stand-in on PATH."""

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "files/usr/local/sbin/flaskdeploy-alert"


@pytest.fixture
def receiver():
    posts = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204 if "ok" in self.path else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", posts
    server.shutdown()


def run(tmp_path, config, unit="shop-digest.service"):
    """The script with CONFIG pointed at tmp_path's alert.json and a systemctl that
    answers for the unit."""
    (tmp_path / "alert.json").write_text(json.dumps(config))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "systemctl"
    fake.write_text("#!/bin/sh\nprintf 'Result=timeout\\nExecMainStatus=15\\nExecMainCode=2\\n'\n")
    fake.chmod(0o755)
    source = SCRIPT.read_text().replace('CONFIG = "/etc/flaskdeploy/alert.json"',
                                        f'CONFIG = "{tmp_path / "alert.json"}"')
    assert str(tmp_path) in source
    (tmp_path / "alert.py").write_text(source)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run([sys.executable, str(tmp_path / "alert.py"), unit], capture_output=True, text=True,
                          env=env, timeout=60)


def test_the_command_gets_the_unit_and_why_it_failed(tmp_path):
    out = tmp_path / "seen"
    result = run(tmp_path, {"command": f'echo "$FLASKDEPLOY_UNIT $FLASKDEPLOY_RESULT $FLASKDEPLOY_STATUS '
                                       f'$FLASKDEPLOY_HOST" > {out}', "url": ""})
    assert result.returncode == 0, result.stderr
    unit, why, status, host = out.read_text().split()
    assert (unit, why, status) == ("shop-digest.service", "timeout", "15") and host


def test_the_url_gets_a_json_post(tmp_path, receiver):
    base, posts = receiver
    result = run(tmp_path, {"command": "", "url": f"{base}/ok/token"})
    assert result.returncode == 0, result.stderr
    [(path, body)] = posts
    assert path == "/ok/token"
    assert (body["unit"], body["result"], body["status"]) == ("shop-digest.service", "timeout", "15")
    assert "shop-digest.service failed on" in body["text"]


def test_a_failing_command_or_url_fails_without_showing_the_url(tmp_path, receiver):
    base, posts = receiver
    result = run(tmp_path, {"command": "exit 4", "url": f"{base}/refused/s3cret"})
    assert result.returncode == 1
    assert "alert_command exited with 4" in result.stderr
    assert "POST to http://127.0.0.1/... failed" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert len(posts) == 1  # the command's failure does not skip the POST
