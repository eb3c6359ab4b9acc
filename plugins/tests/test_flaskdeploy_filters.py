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


def facts(address):
    return {"ansible_facts": {"default_ipv4": {"address": address}}}


def topology(groups, hostvars, host, key=None):
    hostvars = {name: {"inventory_hostname": name, **values} for name, values in hostvars.items()}
    return filters.flaskdeploy_topology(hostvars, groups, host, key)


def test_topology_of_one_server():
    t = topology({"all": ["web"], "appservers": ["web"]}, {"web": facts("203.0.113.7")}, "web")
    assert t == {"balanced": False, "appserver": True, "balancer": False, "database": False,
                 "database_host": "web", "database_remote": False, "database_clients": [],
                 "appservers": ["web"], "balancers": [], "databases": [], "balancer_addresses": [],
                 "acme_peers": [], "backends": [],
                 "wsgi_servers": ["gunicorn"], "timers": True}


def test_topology_of_one_server_with_instances_and_another_wsgi_server():
    t = topology({"appservers": ["web"]}, {"web": {**facts("203.0.113.7"), "wsgi_instances": 3,
                                                    "wsgi_server": "uwsgi"}}, "web")
    # Unbalanced: nginx on the host reaches its instances itself (the wsgi role's sockets).
    assert t["backends"] == [] and t["wsgi_servers"] == ["uwsgi"] and t["timers"] is True


CLUSTER = {"appservers": ["app1", "app2"], "loadbalancers": ["lb", "app1"], "databases": ["db"]}
CLUSTER_VARS = {
    "lb": {**facts("10.0.0.1"), "nginx_http_port": 8080},
    "app1": facts("10.0.0.2"),
    "app2": {**facts("10.0.0.3"), "wsgi_instances": 2, "flaskdeploy_backend_port": 9000, "wsgi_server": "uwsgi"},
    "db": {"flaskdeploy_private_address": "192.168.0.4"},
}


def test_topology_of_a_balancer():
    t = topology(CLUSTER, CLUSTER_VARS, "lb")
    assert t["balanced"] and t["balancer"] and not t["appserver"] and not t["database"]
    assert t["backends"] == [{"name": "app1", "addresses": ["10.0.0.2:8000"]},
                             {"name": "app2", "addresses": ["10.0.0.3:9000", "10.0.0.3:9001"]}]
    assert t["wsgi_servers"] == ["gunicorn", "uwsgi"]
    assert t["balancer_addresses"] == ["10.0.0.1", "10.0.0.2"]
    assert t["acme_peers"] == ["10.0.0.2:80"]  # the other balancer, at its HTTP port
    assert t["timers"] is False


def test_topology_of_a_host_in_two_groups():
    t = topology(CLUSTER, CLUSTER_VARS, "app1")
    assert t["appserver"] and t["balancer"] and t["balanced"]
    assert t["acme_peers"] == ["10.0.0.1:8080"]
    # The first app server runs the scheduled jobs, the other not.
    assert t["timers"] is True and topology(CLUSTER, CLUSTER_VARS, "app2", "timers") is False


def test_topology_of_the_database_host_and_its_clients():
    t = topology(CLUSTER, CLUSTER_VARS, "db")
    assert t["database"] and t["database_remote"] and t["database_host"] == "db"
    assert t["database_clients"] == ["10.0.0.2", "10.0.0.3"]
    app = topology(CLUSTER, CLUSTER_VARS, "app2")
    assert app["database_host"] == "db" and app["database_remote"] and app["database_clients"] == []


def test_topology_under_a_limit_names_a_peer_without_facts():
    """--limit app2: the balancers' facts were not gathered. What needs no address is
    still known; what does fails naming the host, unless it has a private address."""
    limited = {**CLUSTER_VARS, "lb": {"nginx_http_port": 8080}}
    assert topology(CLUSTER, limited, "app2", "balanced") is True
    assert topology(CLUSTER, limited, "app2", "database_host") == "db"
    with pytest.raises(AnsibleFilterError, match="lb has no default route"):
        topology(CLUSTER, limited, "app2", "balancer_addresses")
    named = {**limited, "lb": {"flaskdeploy_private_address": "10.0.0.1"}}
    assert topology(CLUSTER, named, "app2", "balancer_addresses") == ["10.0.0.1", "10.0.0.2"]


def test_topology_refuses_a_key_it_does_not_have():
    with pytest.raises(AnsibleFilterError, match="has no 'balancd'"):
        topology(CLUSTER, CLUSTER_VARS, "lb", "balancd")


def test_nothing_but_the_topology_filter_reads_groups():
    """Roles and playbooks take the inventory's shape from flaskdeploy_topology (host
    patterns aside): a `groups` lookup anywhere else is a second source of it."""
    import re

    repo = Path(__file__).resolve().parents[2]
    found = []
    for path in [*repo.glob("roles/*/**/*.yml"), *repo.glob("roles/*/**/*.j2"), *repo.glob("playbooks/**/*.yml"),
                 repo / "site.yml"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![-\w])groups(?![-\w])", code) and "flaskdeploy_topology(groups," not in code \
                    and not re.match(r"\s*groups:", code):
                found.append(f"{path.relative_to(repo)}:{number}: {line.strip()}")
    assert found == []
