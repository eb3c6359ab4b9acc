"""playbooks/vars/flaskdeploy.yml: what the playbooks derive from the inventory.

Each test evaluates the vars file for a made-up inventory with a debug play on the
controller (no server is contacted). A host's `test_default_ipv4` in the inventory
becomes its default_ipv4 fact, as gathering would set it."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "molecule/shared"))
import ansible_eval  # noqa: E402


def evaluate(tmp_path, inventory, expression):
    """{host: value of expression} for every host of inventory."""
    values = ansible_eval.evaluate(tmp_path, inventory, [expression], repo_config=True,
                                   vars_files=[REPO / "playbooks/vars/flaskdeploy.json"],
                                   facts={"default_ipv4": "test_default_ipv4"})
    return {host: value for host, [value] in values.items()}


@pytest.mark.parametrize(("servers", "keepalive"), [
    ({"app1": "uwsgi", "app2": None}, False),
    ({"app1": None, "app2": "waitress"}, True),
])
def test_balancers_keep_no_idle_connections_when_an_app_server_runs_uwsgi(tmp_path, servers, keepalive):
    inventory = {"loadbalancers": {"hosts": {"lb": {}}},
                 "appservers": {"hosts": {name: ({"wsgi_server": server} if server else {})
                                          for name, server in servers.items()}}}
    values = evaluate(tmp_path, inventory, "nginx_backend_keepalive")
    assert values["lb"] is keepalive


@pytest.mark.parametrize(("server", "keepalive"), [("uwsgi", False), ("gunicorn", True), (None, True)])
def test_a_single_server_keeps_idle_connections_unless_it_runs_uwsgi(tmp_path, server, keepalive):
    host = {"wsgi_server": server} if server else {}
    values = evaluate(tmp_path, {"appservers": {"hosts": {"web": host}}}, "nginx_backend_keepalive")
    assert values["web"] is keepalive


def test_each_balancer_asks_the_others_for_acme_tokens(tmp_path):
    def balancer(address, **hostvars):
        return {"test_default_ipv4": {"address": address}, **hostvars}

    inventory = {"loadbalancers": {"hosts": {"lb1": balancer("10.0.0.1"),
                                             "lb2": balancer("10.0.0.2", nginx_http_port=8080),
                                             "lb3": balancer("10.0.0.3")}},
                 "appservers": {"hosts": {"app": {}}}}
    values = evaluate(tmp_path, inventory, "nginx_acme_peers")
    assert values["lb1"] == ["10.0.0.2:8080", "10.0.0.3:80"]
    assert values["lb2"] == ["10.0.0.1:80", "10.0.0.3:80"]
    assert values["lb3"] == ["10.0.0.1:80", "10.0.0.2:8080"]


def test_a_single_server_has_no_acme_peers(tmp_path):
    values = evaluate(tmp_path, {"appservers": {"hosts": {"web": {}}}}, "nginx_acme_peers")
    assert values["web"] == []


def test_the_database_host_serves_the_app_servers_and_only_them(tmp_path):
    """A `databases` host: every app server's services point at it; its firewall opens
    PostgreSQL's and Redis's ports to the app servers' addresses only, and nothing
    to everyone; without one, each app server is its own database host."""
    ip = {"lb": "10.0.0.2", "app1": "10.0.0.11", "app2": "10.0.0.12", "db": "10.0.0.20"}
    inventory = {"all": {"vars": {"postgresql_enabled": True, "redis_enabled": True, "wsgi_listen": "0.0.0.0:8000"}},
                 "loadbalancers": {"hosts": {"lb": {"test_default_ipv4": {"address": ip["lb"]}}}},
                 "appservers": {"hosts": {n: {"test_default_ipv4": {"address": ip[n]}} for n in ("app1", "app2")}},
                 "databases": {"hosts": {"db": {"test_default_ipv4": {"address": ip["db"]}}}}}
    values = evaluate(tmp_path, inventory, "[postgresql_server, redis_server, postgresql_client_addresses, "
                                           "flaskdeploy_restricted_tcp_ports, flaskdeploy_public_tcp_ports]")
    clients = [ip["app1"], ip["app2"]]
    server, redis, addresses, restricted, public = values["db"]
    assert (server, redis, addresses, public) == ("db", "db", clients, [])
    assert restricted == [{"ports": ["5432"], "sources": clients}, {"ports": ["6379"], "sources": clients}]
    for app in ("app1", "app2"):
        server, redis, addresses, restricted, _ = values[app]
        assert (server, redis, addresses) == ("db", "db", [])
        assert all(rule["ports"] not in (["5432"], ["6379"]) for rule in restricted)
    alone = evaluate(tmp_path, {"appservers": {"hosts": {"web": {}}}, "all": {"vars": {"postgresql_enabled": True}}},
                     "[postgresql_server, postgresql_client_addresses, flaskdeploy_restricted_tcp_ports]")
    assert alone["web"] == ["web", [], []]


def test_the_addresses_peers_use_are_the_private_ones_where_named(tmp_path):
    """flaskdeploy_private_interface / _address: the database host's clients (pg_hba,
    Redis, firewall), the URLs' server address and the balancers' backends use them;
    a host without either its default route's address."""
    def host(public, private=None, **hostvars):
        facts = {"test_default_ipv4": {"address": public}}
        if private:
            facts["flaskdeploy_private_address"] = private
        return {**facts, **hostvars}

    inventory = {"loadbalancers": {"hosts": {"lb": host("203.0.113.1", "10.0.0.1")}},
                 "appservers": {"hosts": {"app1": host("203.0.113.2", "10.0.0.2"), "app2": host("203.0.113.3")}},
                 "databases": {"hosts": {"db": host("203.0.113.4", "10.0.0.4")}}}
    values = evaluate(tmp_path, inventory, "[flaskdeploy_database_clients, postgresql_server_address, "
                                           "redis_listen_address, nginx_backends | map(attribute='addresses') | list]")
    assert values["db"][:3] == [["10.0.0.2", "203.0.113.3"], "10.0.0.4", "10.0.0.4"]
    assert values["lb"][3] == [["10.0.0.2:8000"], ["203.0.113.3:8000"]]
    assert values["app1"][1] == "10.0.0.4"


@pytest.mark.parametrize(("db_vars", "exposed"), [
    ({}, True),
    ({"firewall_enabled": True}, False),
    ({"flaskdeploy_private_interface": "ens10"}, False),
    ({"postgresql_enabled": False, "redis_enabled": False}, False),
])
def test_a_database_host_on_its_public_address_without_a_firewall_is_refused(tmp_path, db_vars, exposed):
    inventory = {"all": {"vars": {"postgresql_enabled": True, "redis_enabled": True}},
                 "appservers": {"hosts": {"app": {"test_default_ipv4": {"address": "203.0.113.2"}}}},
                 "databases": {"hosts": {"db": {"test_default_ipv4": {"address": "203.0.113.4"}, **db_vars}}}}
    values = evaluate(tmp_path, inventory, "flaskdeploy_database_exposed")
    assert values["db"] is exposed and values["app"] is False


@pytest.mark.parametrize(("all_vars", "tls"), [
    ({"postgresql_enabled": True}, True),
    ({"redis_enabled": True, "postgresql_tls": False}, True),
    ({"postgresql_enabled": True, "postgresql_tls": False}, False),
    ({}, False),
])
def test_tls_with_a_database_host_and_a_certificate_for_its_private_address(tmp_path, all_vars, tls):
    """With a `databases` host, TLS is on for a service that is on unless turned off,
    on the database host and the app servers alike, and the database host's
    certificate names its private address, loopback and its name (an inventory name
    that is no DNS name is left out); without one, no TLS."""
    inventory = {"all": {"vars": all_vars},
                 "appservers": {"hosts": {"app": {"test_default_ipv4": {"address": "203.0.113.2"}}}},
                 "databases": {"hosts": {"db_1": {"test_default_ipv4": {"address": "203.0.113.4"},
                                                  "flaskdeploy_private_address": "10.0.0.4"}}}}
    values = evaluate(tmp_path, inventory, "[flaskdeploy_database_tls | bool, service_tls_server, "
                                           "service_tls_subject_alt_names]")
    assert values["db_1"] == [tls, "db_1", ["IP:10.0.0.4", "IP:127.0.0.1", "IP:::1", "DNS:localhost"]]
    assert values["app"][:2] == [tls, "db_1"]
    alone = evaluate(tmp_path, {"appservers": {"hosts": {"web": {}}}, "all": {"vars": all_vars}},
                     "flaskdeploy_database_tls | bool")
    assert alone["web"] is False


def test_http3_opens_udp_on_the_hosts_whose_nginx_speaks_https(tmp_path):
    """nginx_http3: the firewall opens UDP on nginx's HTTPS port where nginx serves
    HTTPS (the balancers; a single server in the https profile), nowhere else (an
    app server behind balancers, the http and wsgi profiles, the database host)."""
    inventory = {"all": {"vars": {"nginx_http3": True, "nginx_https_port": 8443}},
                 "loadbalancers": {"hosts": {"lb": {}}},
                 "appservers": {"hosts": {"app": {}}},
                 "databases": {"hosts": {"db": {}}}}
    values = evaluate(tmp_path, inventory, "flaskdeploy_public_udp_ports")
    assert values == {"lb": [8443], "app": [], "db": []}
    single = {"appservers": {"hosts": {"https": {}, "http": {"flaskdeploy_profile": "http"},
                                       "wsgi": {"flaskdeploy_profile": "wsgi"}, "off": {"nginx_http3": False}}},
              "all": {"vars": {"nginx_http3": True}}}
    values = evaluate(tmp_path, single, "flaskdeploy_public_udp_ports")
    assert values == {"https": [443], "http": [], "wsgi": [], "off": []}


def test_the_wsgi_role_gets_the_app_as_one_value_and_listens_where_the_topology_says(tmp_path):
    """The wsgi role's inputs as the playbooks wire them (wsgi_app from the app role's
    names; wsgi_balanced, wsgi_edge, wsgi_backend_port), its defaults below the
    inventory as role defaults are: a unix socket named after the app behind a local
    nginx, port 80 in the WSGI-only profile, the host's address and
    flaskdeploy_backend_port behind balancers; a listen address set in the inventory
    wins."""
    import yaml

    defaults = {}
    for path in ("roles/app/defaults/main.yml", "roles/app/vars/main.yml", "roles/wsgi/defaults/main.yml"):
        defaults.update(yaml.safe_load((REPO / path).read_text()))
    expression = "[wsgi_listen, wsgi_service_name, wsgi_app.config_dir, wsgi_app.proxy_count | int]"
    single = {"all": {"vars": {**defaults, "app_name": "shop"}},
              "appservers": {"hosts": {"nginx": {}, "edge": {"flaskdeploy_profile": "wsgi"},
                                       "mine": {"wsgi_listen": "127.0.0.1:9001"}}}}
    assert evaluate(tmp_path, single, expression) == {
        "nginx": ["/run/shop/wsgi.sock", "shop", "/etc/shop", 1],
        "edge": ["0.0.0.0:80", "shop", "/etc/shop", 0],
        "mine": ["127.0.0.1:9001", "shop", "/etc/shop", 1]}
    balanced = {"all": {"vars": {**defaults, "flaskdeploy_backend_port": 9000}},
                "loadbalancers": {"hosts": {"lb": {"test_default_ipv4": {"address": "10.0.0.2"}}}},
                "appservers": {"hosts": {"app": {"test_default_ipv4": {"address": "10.0.0.5"}}}}}
    assert evaluate(tmp_path, balanced, "wsgi_listen")["app"] == "10.0.0.5:9000"


def test_nginx_gets_the_apps_name_static_files_and_wsgi_listens_where_the_app_runs(tmp_path):
    """nginx's inputs as the playbooks wire them: on an app server (the app and wsgi
    roles' values in scope) the app's name, static URL and WSGI socket, HTTPS off in
    the http profile, a TLS mode set in the inventory winning; on a load balancer (no
    app role there) the site is `app`, with no static files."""
    import yaml

    def load(*paths):
        values = {}
        for path in paths:
            values.update(yaml.safe_load((REPO / path).read_text()))
        return values

    expression = ("[nginx_site_name, nginx_upstream_servers, nginx_tls_mode, nginx_static_url, nginx_static_root,"
                  " nginx_client_max_body_size | string]")
    inventory = {"all": {"vars": load("roles/nginx/defaults/main.yml")},
                 "appservers": {"vars": {**load("roles/app/defaults/main.yml", "roles/app/vars/main.yml",
                                                "roles/wsgi/defaults/main.yml", "roles/wsgi/vars/main.yml"),
                                         "app_name": "shop"},
                                "hosts": {"https": {}, "http": {"flaskdeploy_profile": "http"},
                                          "acme": {"nginx_tls_mode": "acme", "app_static_url": "/assets/"}}},
                 }
    assert evaluate(tmp_path, inventory, expression) == {
        "https": ["shop", ["unix:/run/shop/wsgi.sock"], "selfsigned", "/static/", "", "10485760"],
        "http": ["shop", ["unix:/run/shop/wsgi.sock"], "off", "/static/", "", "10485760"],
        "acme": ["shop", ["unix:/run/shop/wsgi.sock"], "acme", "/assets/", "", "10485760"]}
    inventory["loadbalancers"] = {"hosts": {"lb": {}}}
    for i, host in enumerate([*inventory["appservers"]["hosts"].values(), inventory["loadbalancers"]["hosts"]["lb"]]):
        host["test_default_ipv4"] = {"address": f"10.0.0.{i + 2}"}  # (gathered facts: the default route's)
    assert evaluate(tmp_path, inventory, expression)["lb"] == ["app", [], "selfsigned", "/static/", "", "10m"]
    # The database host, which runs no app role, names the database and the Redis user
    # after the inventory's app_name.
    database = {"all": {"vars": {**load("roles/postgresql/defaults/main.yml", "roles/redis/defaults/main.yml"),
                                 "app_name": "my-shop"}},
                "databases": {"hosts": {"db": {"test_default_ipv4": {"address": "10.0.0.9"}}}}}
    assert evaluate(tmp_path, database, "[postgresql_database, redis_user]") == {"db": ["my_shop", "my-shop"]}


def test_the_roles_defaults_the_topology_sets_and_the_inventory_overrides(tmp_path):
    """Role inputs whose defaults the playbooks derive (X_default, wired in the vars
    file) while the inventory's X wins: behind balancers the app trusts and fail2ban
    spares the balancers, the firewall opens nginx's ports on the balancer and the
    WSGI port to it on the app server; a firewall port list in the inventory wins."""
    import yaml

    defaults = {}
    for role in ("app", "baseline", "firewall"):
        defaults.update(yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text()))
    inventory = {"all": {"vars": defaults},
                 "loadbalancers": {"hosts": {"lb": {"test_default_ipv4": {"address": "10.0.0.2"}}}},
                 "appservers": {"hosts": {"app": {"test_default_ipv4": {"address": "10.0.0.5"}},
                                          "own": {"test_default_ipv4": {"address": "10.0.0.6"},
                                                  "firewall_allowed_tcp_ports": [22000]}}}}
    expression = ("[app_trusted_proxies, baseline_fail2ban_peer_addresses, app_proxy_count | int,"
                  " firewall_allowed_tcp_ports, firewall_restricted_tcp_ports | map(attribute='ports') | list]")
    values = evaluate(tmp_path, inventory, expression)
    assert values["lb"][3:] == [[80, 443], []]
    assert values["app"] == [["10.0.0.2"], ["10.0.0.2"], 1, [], [["8000"]]]
    assert values["own"][3] == [22000]
    edge = {"all": {"vars": defaults}, "appservers": {"hosts": {"edge": {"flaskdeploy_profile": "wsgi"}}}}
    assert evaluate(tmp_path, edge, "[app_trusted_proxies, app_proxy_count | int]") == {"edge": [[], 0]}
