"""plugins/action/flaskdeploy_apt.py: apt's task, one dpkg-query when every package is
installed; anything else goes to ansible.builtin.apt unchanged."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("flaskdeploy_apt_action", PLUGINS / "action" / "flaskdeploy_apt.py")
action = importlib.util.module_from_spec(spec)
spec.loader.exec_module(action)


def test_plain_names_only():
    assert action.names(["nginx", "python3-venv", "libstdc++6"]) == ["nginx", "python3-venv", "libstdc++6"]
    assert action.names("nginx, certbot") == ["nginx", "certbot"]
    for value in (["nginx=1.22*"], ["nginx/bookworm-backports"], ["nginx*"], ["./x.deb"], ["libc6:amd64"],
                  ["-x"], [], None, {"nginx": 1}):
        assert action.names(value) is None, value


QUERY = "ii \tnginx\nii \tcertbot\n## auto\n"


@pytest.mark.parametrize("rc, stdout, expected", [
    (0, QUERY, True),
    (0, "ii \tnginx\nrc \tcertbot\n## auto\n", False),  # removed, its configuration left
    (0, "ii \tnginx\niU \tcertbot\n## auto\n", False),  # unpacked, not configured
    (0, "ii \tnginx\n## auto\n", False),  # certbot not answered for
    (1, "ii \tnginx\n", False),  # dpkg-query: no package certbot
    # installed only as another's dependency: the module marks it manual (autoremove keeps it)
    (0, QUERY + "certbot\n", False),
    (0, "ii \tnginx\nii \tcertbot\n", False),  # (apt-mark did not answer)
])
def test_installed_only_when_dpkg_says_so_for_each(rc, stdout, expected):
    assert action.all_installed(["nginx", "certbot"], rc, stdout) is expected


fakes_spec = importlib.util.spec_from_file_location("fake_action", PLUGINS / "tests" / "fake_action.py")
fakes = importlib.util.module_from_spec(fakes_spec)
fakes_spec.loader.exec_module(fakes)


def run(monkeypatch, args, rc=0, stdout=QUERY):
    """The plugin's run with the connection faked: (result, commands run, modules run)."""
    return fakes.run(monkeypatch, action, args, rc, stdout)


def test_every_package_installed_is_one_query_and_no_module(monkeypatch):
    result, commands, modules = run(monkeypatch, {"name": ["nginx", "certbot"], "cache_valid_time": 3600})
    assert result == {"changed": False, "msg": "installed already: nginx, certbot"}
    assert commands == ["dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\n' -- nginx certbot"
                        " && echo '## auto' && apt-mark showauto -- nginx certbot"]
    assert modules == []


@pytest.mark.parametrize("args, rc, stdout, queried", [
    ({"name": ["nginx", "certbot"]}, 1, "ii \tnginx\n", True),  # one missing
    ({"name": ["nginx", "certbot"], "state": "latest"}, 0, QUERY, False),
    ({"name": ["nginx=1.22.1-9"]}, 0, QUERY, False),
    ({"deb": "/tmp/x.deb"}, 0, QUERY, False),
    ({"update_cache": True}, 0, QUERY, False),
])
def test_anything_else_goes_to_apt_unchanged(monkeypatch, args, rc, stdout, queried):
    result, commands, modules = run(monkeypatch, args, rc, stdout)
    assert modules == [("ansible.builtin.apt", args)] and result == {"changed": True}
    assert bool(commands) is queried


def test_through_ansible_installed_packages_are_ok_and_nothing_changes(tmp_path):
    """A real run on this (Debian) machine, for two packages installed by hand."""
    manual = subprocess.run(["apt-mark", "showmanual"], capture_output=True, text=True).stdout.split()
    status = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\n", "--", *manual],
                            capture_output=True, text=True).stdout
    chosen = sorted(line.split("\t")[1] for line in status.splitlines() if line.startswith("ii \t"))[:2]
    if len(chosen) < 2:
        pytest.skip("fewer than two packages installed by hand here")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"flaskdeploy_apt": {"name": chosen, "cache_valid_time": 3600}, "register": "out"},
        {"ansible.builtin.copy": {"dest": str(tmp_path / "out.json"), "content": "{{ out | to_json }}"}}]}]))
    env = {**os.environ, "ANSIBLE_ACTION_PLUGINS": str(PLUGINS / "action"), "ANSIBLE_LIBRARY": str(PLUGINS / "modules"),
           "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "play.yml", "-e", f"ansible_python_interpreter={sys.executable}"],
                            env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["changed"] is False and out["msg"] == f"installed already: {', '.join(chosen)}", out
