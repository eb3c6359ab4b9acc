"""The repository's inventories, as ansible-inventory reads them from a clone.

`inventory/` is what `ansible-playbook site.yml -i inventory` reads (and what
ansible.cfg names): it must target nobody until the user adds a server, because
Ansible reads every file under an inventory directory, subfolders included. The
examples live in `examples/`, each runnable with its own `-i`."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The vault example's password, as its hosts.yml tells users to write to .vault-pass.
EXAMPLE_VAULT_PASSWORD = "flaskdeploy-example-only"


def inventory(path, *options):
    """ansible-inventory --list of path, run from the repository as users run it."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(["ansible-inventory", "-i", path, "--list", *options],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def hosts(listing):
    return {host for group in listing.values() if isinstance(group, dict)
            for host in group.get("hosts", [])}


def test_the_shipped_inventory_targets_nobody():
    listing = inventory("inventory")
    assert hosts(listing) == set()
    assert listing["_meta"]["hostvars"] == {}
    # Both groups the playbooks target exist (no "could not match" warning), empty.
    assert {"appservers", "loadbalancers"} <= set(listing["all"]["children"])


def test_ansible_cfg_names_the_shipped_inventory():
    # ansible-playbook without -i reads the same directory.
    listing = inventory(str(REPO / "inventory"))
    assert hosts(listing) == set()


def test_a_server_added_to_the_shipped_inventory_is_an_app_server(tmp_path):
    """What the README's step 1 gives: one host, in appservers, no balancer."""
    (tmp_path / "inventory").mkdir()
    for item in (REPO / "inventory").iterdir():
        target = tmp_path / "inventory" / item.name
        if item.name != "hosts.yml":
            target.symlink_to(item)
    text = (REPO / "inventory/hosts.yml").read_text()
    example = "    # web1.example.com:\n    #   ansible_user: debian\n"
    assert example in text
    (tmp_path / "inventory/hosts.yml").write_text(text.replace(example, example.replace("# ", "")))
    listing = inventory(str(tmp_path / "inventory"))
    assert hosts(listing) == {"web1.example.com"}
    assert listing["appservers"]["hosts"] == ["web1.example.com"]
    assert listing["_meta"]["hostvars"]["web1.example.com"]["ansible_user"] == "debian"
    assert "hosts" not in listing.get("loadbalancers", {})


def test_the_cluster_example_parses_with_its_group_vars():
    listing = inventory("examples/cluster")
    assert set(listing["loadbalancers"]["hosts"]) == {"lb1.example.com"}
    assert set(listing["appservers"]["hosts"]) == {f"app{i}.example.com" for i in (1, 2, 3)}
    assert set(listing["databases"]["hosts"]) == {"db1.example.com"}
    hostvars = listing["_meta"]["hostvars"]
    assert hostvars["db1.example.com"]["app_name"] == "shop" and hostvars["db1.example.com"]["postgresql_enabled"]
    assert hostvars["app1.example.com"]["app_name"] == "shop"          # group_vars/all.yml
    assert hostvars["lb1.example.com"]["nginx_upstream_method"] == "least_conn"
    assert hostvars["app3.example.com"]["wsgi_instances"] == 2


def test_the_vault_example_parses_and_decrypts(tmp_path):
    password = tmp_path / "vault-pass"
    password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    listing = inventory("examples/vault", "--vault-password-file", str(password))
    assert set(listing["appservers"]["hosts"]) == {"app.example.com"}
    hostvars = listing["_meta"]["hostvars"]["app.example.com"]
    assert hostvars["vault_app_secret_key"] and "$ANSIBLE_VAULT" not in hostvars["vault_app_secret_key"]


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").iterdir() if p.is_dir()))
def test_every_example_parses_and_has_hosts(tmp_path, example):
    password = tmp_path / "vault-pass"
    password.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    assert hosts(inventory(f"examples/{example}", "--vault-password-file", str(password)))
