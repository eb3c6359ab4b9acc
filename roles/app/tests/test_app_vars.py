"""The app role's defaults and vars that keep secrets from travelling with the code."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROLE.parents[1] / "molecule/shared"))
import ansible_eval  # noqa: E402

EXCLUDE = yaml.safe_load((ROLE / "defaults/main.yml").read_text())["app_source_exclude_regex"]


@pytest.mark.parametrize("path", [
    ".env", "config/.env", ".env.production", "instance", "instance/app.sqlite", "instance/config.py",
    "certs/server.key", "deploy/id.pem", ".git/config", "venv/bin/python", ".venv", "pkg/__pycache__/x.pyc",
    "tests/test_app.py", "frontend/node_modules/x/index.js",
])
def test_the_path_source_leaves_out_secrets_state_and_caches(path):
    assert re.search(EXCLUDE, path)  # Ansible's `search` test is re.search


@pytest.mark.parametrize("path", [
    ".flaskenv", "app/__init__.py", "app/static/site.css", "app/instance_helpers.py", "pkg/instance/x.py",
    "Procfile", "requirements.txt", "app/templates/environment.html", "keys.md",
])
def test_the_path_source_keeps_the_code(path):
    assert not re.search(EXCLUDE, path)


@pytest.mark.parametrize(("repo", "public"), [
    ("https://deploy:s3cret-token@git.example.com/team/app.git", "https://git.example.com/team/app.git"),
    ("ssh://git@git.example.com/team/app.git", "ssh://git.example.com/team/app.git"),
    ("git@git.example.com:team/app.git", "git@git.example.com:team/app.git"),
    ("https://git.example.com/team/app.git", "https://git.example.com/team/app.git"),
])
def test_the_revision_names_a_git_repository_without_its_credentials(tmp_path, repo, public):
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
             "tasks": [{"ansible.builtin.debug": {"msg": "VALUE {{ app_release_revision }}"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    extra = {"app_source_type": "git", "app_source_git_repo": repo, "app_git": {"after": "abc123"},
             "role_path": str(ROLE)}
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", str(tmp_path / "play.yml"),
                             "-e", json.dumps(extra)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if "VALUE " in l)
    assert json.loads(line.split(" => ", 1)[1])["msg"] == f"VALUE git {public} abc123"
    assert "s3cret" not in result.stdout


def evaluate(tmp_path, extra, *names):
    """The role's defaults and vars evaluated by Ansible with `extra`: {name: value}."""
    [values] = ansible_eval.evaluate(tmp_path, "localhost,", names, extra_vars={"role_path": str(ROLE), **extra},
                                     vars_files=[ROLE / "defaults/main.yml", ROLE / "vars/main.yml"]).values()
    return dict(zip(names, values))


def test_a_git_token_reaches_git_through_its_credential_helper_not_its_command_line(tmp_path):
    """A real git clone over HTTP from a server on 127.0.0.1 that asks for Basic
    credentials: git gets the URL without them (its command line, which `ps` shows to
    every local user) and the role's environment answers the server's challenge."""
    import base64
    import http.server
    import threading

    source = tmp_path / "src"
    source.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(git + ["init", "-q", "-b", "main", str(source)], check=True)
    (source / "app.py").write_text("app = None\n")
    subprocess.run(git + ["-C", str(source), "add", "-A"], check=True)
    subprocess.run(git + ["-C", str(source), "commit", "-qm", "app"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(tmp_path / "srv" / "app.git")], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "srv" / "app.git"), "update-server-info"], check=True)
    wanted = "Basic " + base64.b64encode(b"deploy:s3cret/token").decode()
    seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "srv"), **kwargs)

        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        repo = f"http://deploy:s3cret%2Ftoken@127.0.0.1:{server.server_port}/app.git"
        values = evaluate(tmp_path, {"app_source_type": "git", "app_source_git_repo": repo},
                          "app_source_git_clone_url", "app_source_git_environment")
        url, environment = values["app_source_git_clone_url"], values["app_source_git_environment"]
        assert url == f"http://127.0.0.1:{server.server_port}/app.git"
        assert "s3cret" not in environment["GIT_CONFIG_VALUE_0"]
        # The helper answers for the repository's server only (not a submodule's).
        assert environment["GIT_CONFIG_KEY_0"] == f"credential.http://127.0.0.1:{server.server_port}.helper"
        other = subprocess.run(["git", "credential", "fill"], input="protocol=https\nhost=evil.example\n\n",
                               capture_output=True, text=True, timeout=30,
                               env={**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **environment})
        assert "s3cret" not in other.stdout and other.returncode != 0, other
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        clone = subprocess.run(["git", "clone", "-q", url, str(tmp_path / "out")], capture_output=True, text=True,
                               env={**env, **environment}, timeout=60)
        assert clone.returncode == 0, clone.stderr
        assert (tmp_path / "out" / "app.py").read_text() == "app = None\n"
        assert wanted in seen
        # Without the helper's environment the server refuses git: the check can fail.
        refused = subprocess.run(["git", "clone", "-q", url, str(tmp_path / "out2")], capture_output=True,
                                 text=True, env={**env, "GIT_TERMINAL_PROMPT": "0"}, timeout=60)
        assert refused.returncode != 0
    finally:
        server.shutdown()


@pytest.mark.parametrize("repo", ["ssh://git@git.example.com/team/app.git", "git@git.example.com:team/app.git",
                                  "https://git.example.com/team/app.git", "/opt/src/app"])
def test_urls_without_http_credentials_are_cloned_as_given(tmp_path, repo):
    values = evaluate(tmp_path, {"app_source_type": "git", "app_source_git_repo": repo},
                      "app_source_git_clone_url", "app_source_git_environment")
    assert values == {"app_source_git_clone_url": repo, "app_source_git_environment": {}}


def test_every_step_that_runs_the_app_gets_the_services_sandbox(tmp_path):
    sandbox = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/hello",
               "SystemCallFilter=~@privileged @resources"]
    values = evaluate(tmp_path, {"app_sandbox_properties": sandbox,
                                 "app_shared_paths": ["instance", "media/up", "instance/uploads", "media/up", "m"]},
                      "app_run_as_app", "app_shared_paths_overlapping")
    assert [a for a in values["app_run_as_app"] if a.startswith("--property=")][-4:] == [
        "--property=" + p for p in sandbox]
    assert values["app_shared_paths_overlapping"] == ["instance/uploads", "media/up"]
