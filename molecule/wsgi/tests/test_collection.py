"""The project as an Ansible collection (galaxy.yml): built with ansible-galaxy,
installed into a temporary collections path, and used from outside the repository by
FQCN against a converged host: a playbook of one's own with a role, the module and
the filter, and the collection's own site playbook in check mode (nothing to change)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testlib

testinfra_hosts = ["ansible://fd-wsgi-uwsgi12"]

LIMIT = "fd-wsgi-uwsgi12"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(collections path, a directory outside the repository with an ansible.cfg that
    names only that path)."""
    base = tmp_path_factory.mktemp("collection")
    subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", base / "dist"],
                   cwd=testlib.REPO, check=True, capture_output=True, text=True, timeout=120)
    [artifact] = (base / "dist").glob("flaskdeploy-flaskdeploy-*.tar.gz")
    # (--force: with a flaskdeploy.flaskdeploy anywhere in the controller's collection
    # paths, such as ~/.ansible/collections, ansible-galaxy would install nothing here.)
    installed = subprocess.run([BIN / "ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force",
                                "-p", base / "collections", artifact],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    work = base / "work"
    work.mkdir()
    (work / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {base / 'collections'}\ninterpreter_python = /usr/bin/python3\n"
        "callback_result_format = yaml\n[connection]\npipelining = true\n")
    return base / "collections", work


def run(work, *args):
    """ansible-playbook from the directory outside the repository, with its ansible.cfg
    only: none of the repository's roles, plugins or settings."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ANSIBLE_") or key == "ANSIBLE_STRATEGY"}
    env.update(ANSIBLE_CONFIG=str(work / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_STRATEGY="linear")
    return subprocess.run([BIN / "ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", LIMIT,
                           *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)


def test_the_built_collection_holds_roles_plugins_and_playbooks(collection):
    root = collection[0] / "ansible_collections/flaskdeploy/flaskdeploy"
    manifest = json.loads((root / "MANIFEST.json").read_text())["collection_info"]
    assert (manifest["namespace"], manifest["name"]) == ("flaskdeploy", "flaskdeploy")
    assert {p.name for p in (root / "roles").iterdir()} >= {"app", "wsgi", "nginx", "python", "processes"}
    # (plugins/action: the roles' apt and systemd tasks, and the app role's staging)
    for part in ("plugins/modules/flaskdeploy_secret.py", "plugins/filter/flaskdeploy.py", "playbooks/site.yml",
                 "plugins/action/flaskdeploy_apt.py", "plugins/action/flaskdeploy_systemd.py",
                 "plugins/action/flaskdeploy_stage.py", "plugins/modules/flaskdeploy_stage.py",
                 "meta/runtime.yml", "CHANGELOG.md", "sample_app/hello/__init__.py"):
        assert (root / part).is_file(), part
    # Not the repository's tests and tooling.
    assert not (root / "molecule").exists() and not (root / "bench").exists()


def test_a_playbook_of_ones_own_uses_roles_module_and_filter_by_fqcn(host, collection):
    _, work = collection
    host.run("rm -f /root/collection-secret")
    (work / "mine.yml").write_text(json.dumps([{
        "name": "Mine", "hosts": "all", "become": True, "gather_facts": True,  # (the python role reads the facts)
        "tasks": [
            {"name": "Python", "ansible.builtin.import_role": {"name": "flaskdeploy.flaskdeploy.python"}},
            # (a role whose files are checked by flaskdeploy_differs: it needs no filter
            # of the collection's, which a role's own tasks could not find from here)
            {"name": "The release tool", "ansible.builtin.import_role": {
                "name": "flaskdeploy.flaskdeploy.app", "tasks_from": "tool"}},
            {"name": "A secret", "flaskdeploy.flaskdeploy.flaskdeploy_secret": {"path": "/root/collection-secret"}},
            {"name": "Topology", "ansible.builtin.debug": {
                "msg": "APPSERVER={{ hostvars | flaskdeploy.flaskdeploy.flaskdeploy_topology(groups, inventory_hostname,"
                       " 'appserver') }} BALANCED={{ hostvars | flaskdeploy.flaskdeploy.flaskdeploy_topology(groups,"
                       " inventory_hostname, 'balanced') }}"}},
        ]}]))
    result = run(work, "mine.yml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "1"  # the secret; Python and the tool were there
    assert "flaskdeploy.flaskdeploy.app : Install the release tool" in result.stdout
    assert host.file("/root/collection-secret").mode == 0o600
    assert "APPSERVER=True BALANCED=False" in result.stdout, result.stdout[-2000:]


def test_the_collections_site_playbook_finds_nothing_to_change(collection):
    """flaskdeploy.flaskdeploy.site in check mode on the host molecule converged with
    the repository: the same roles, nothing to change."""
    _, work = collection
    result = run(work, "flaskdeploy.flaskdeploy.site", "--check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert testlib.recap(result.stdout, LIMIT)["changed"] == "0", testlib.changed_tasks(result.stdout)
    assert "flaskdeploy.flaskdeploy.wsgi : " in result.stdout  # the collection's roles ran
