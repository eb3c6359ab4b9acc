"""The app role's defaults and vars that keep secrets from travelling with the code."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[1]
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
