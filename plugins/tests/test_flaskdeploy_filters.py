"""plugins/filter/flaskdeploy.py: which address a host's peers reach it on."""

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

spec = importlib.util.spec_from_file_location(
    "flaskdeploy_filters", Path(__file__).resolve().parents[1] / "filter" / "flaskdeploy.py")
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)

FACTS = {"default_ipv4": {"address": "203.0.113.7"}, "interfaces": ["lo", "eth0", "ens10"],
         "eth0": {"ipv4": {"address": "203.0.113.7"}}, "ens10": {"ipv4": {"address": "10.0.0.5"}}}


def test_the_default_route_when_nothing_is_named():
    host = {"inventory_hostname": "db", "ansible_facts": FACTS}
    assert filters.flaskdeploy_address(host) == "203.0.113.7"
    assert not filters.flaskdeploy_private(host)


def test_a_private_interface_gives_its_address():
    host = {"inventory_hostname": "db", "ansible_facts": FACTS, "flaskdeploy_private_interface": "ens10"}
    assert filters.flaskdeploy_address(host) == "10.0.0.5"
    assert filters.flaskdeploy_private(host)


def test_a_private_address_wins():
    host = {"ansible_facts": FACTS, "flaskdeploy_private_interface": "ens10", "flaskdeploy_private_address": "10.9.9.9"}
    assert filters.flaskdeploy_address(host) == "10.9.9.9"


def test_an_interface_with_a_dash_is_found_under_its_fact_name():
    facts = {**FACTS, "wg_private": {"ipv4": {"address": "10.8.0.2"}}}
    host = {"ansible_facts": facts, "flaskdeploy_private_interface": "wg-private"}
    assert filters.flaskdeploy_address(host) == "10.8.0.2"


@pytest.mark.parametrize("host, words", [
    ({"inventory_hostname": "db", "ansible_facts": FACTS, "flaskdeploy_private_interface": "eth9"},
     ["flaskdeploy_private_interface of db is eth9", "lo, eth0, ens10"]),
    ({"inventory_hostname": "db", "ansible_facts": {}}, ["db has no default route", "flaskdeploy_private_address"]),
])
def test_a_missing_address_is_an_error_naming_the_variable(host, words):
    with pytest.raises(AnsibleFilterError) as error:
        filters.flaskdeploy_address(host)
    for word in words:
        assert word in str(error.value)
