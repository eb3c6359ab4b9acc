"""plugins/action/flaskdeploy_apt.py: apt's task, one dpkg-query when every package is
installed; anything else goes to ansible.builtin.apt unchanged."""

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1]
fakes_spec = importlib.util.spec_from_file_location("fake_action", PLUGINS / "tests" / "fake_action.py")
fakes = importlib.util.module_from_spec(fakes_spec)
fakes_spec.loader.exec_module(fakes)
action = fakes.load_action("flaskdeploy_apt")


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


def run(monkeypatch, args, rc=0, stdout=QUERY):
    """The plugin's run with the connection faked: (result, commands run, modules run)."""
    return fakes.run(monkeypatch, action, args, rc, stdout)


def test_every_package_installed_is_one_query_and_no_module(monkeypatch):
    result, commands, modules = run(monkeypatch, {"name": ["nginx", "certbot"], "cache_valid_time": 3600})
    assert result == {"changed": False, "msg": "installed already: nginx, certbot"}
    assert commands == ["dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\n' -- nginx certbot"
                        " && echo '## auto' && { [ ! -e /var/lib/apt/extended_states ] || {"
                        " [ -f /var/lib/apt/extended_states ] && [ -r /var/lib/apt/extended_states ] && "
                        + action.AUTO_NAMES + "/var/lib/apt/extended_states; }; }"]
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
    out = fakes.through_ansible(
        tmp_path, [{"flaskdeploy_apt": {"name": chosen, "cache_valid_time": 3600}, "register": "out"}], ["out"])["out"]
    assert out["changed"] is False and out["msg"] == f"installed already: {', '.join(chosen)}", out


STATES = """Package: certbot
Architecture: amd64
Auto-Installed: 1

Package: nginx
Architecture: amd64
Auto-Installed: 0

Package: libc6
Architecture: i386
Auto-Installed: 1

Package: python3-venv
Architecture: amd64
Auto-Installed: 1
"""


def ask(tmp_path, wanted, states):
    """The command itself, run by sh, with dpkg-query replaced by one that says every
    package is installed, and apt's file at `states`: its completed process."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dpkg-query").write_text('#!/bin/sh\nshift 4\nfor p; do printf "ii \\t%s\\n" "$p"; done\n')
    (fake / "dpkg-query").chmod(0o755)
    return subprocess.run(["sh", "-c", action.query(wanted, str(states))], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})


@pytest.mark.parametrize("states, wanted, expected", [
    (STATES, ["nginx"], True),  # marked, but not automatic
    (STATES, ["nginx", "certbot"], False),
    (STATES, ["libc6"], False),  # automatic for another architecture: the module decides
    (STATES, ["python3-venv"], False),  # the last stanza, no blank line after it
    (STATES.replace("\n\n", "\n\n\n"), ["nginx", "certbot"], False),  # more blank lines between
    (None, ["nginx", "certbot"], True),  # no file: apt marked nothing automatic
    ("", ["nginx"], True),
])
def test_the_query_reads_the_packages_marked_automatic_from_apts_file(tmp_path, states, wanted, expected):
    """What apt-mark showauto would say, from the same file."""
    path = tmp_path / "extended_states"
    if states is not None:
        path.write_text(states)
    answer = ask(tmp_path, wanted, path)
    assert answer.returncode == 0, answer
    assert action.all_installed(wanted, answer.returncode, answer.stdout) is expected, answer


def test_an_unreadable_file_sends_the_task_to_the_module(tmp_path):
    path = tmp_path / "extended_states"
    path.mkdir()  # (awk cannot read a directory: it fails, as on a file it may not read)
    answer = ask(tmp_path, ["nginx"], path)
    assert answer.returncode != 0 and answer.stdout == "ii \tnginx\n## auto\n", answer
    assert action.all_installed(["nginx"], answer.returncode, answer.stdout) is False


def test_the_names_read_are_apt_marks_own_on_this_machine():
    """On this (Debian) machine: every package apt-mark showauto names, the query's
    reading of the file names too (the file may also name packages since removed)."""
    # (apt-mark names a package of another architecture pkg:arch; the file, by its name)
    shown = {name.split(":")[0] for name in
             subprocess.run(["apt-mark", "showauto"], capture_output=True, text=True, check=True).stdout.split()}
    read = subprocess.run(["sh", "-c", action.AUTO_NAMES + action.EXTENDED_STATES],
                          capture_output=True, text=True, check=True).stdout.split()
    if not shown:
        pytest.skip("no package marked automatic here")
    assert shown <= set(read), sorted(shown - set(read))
