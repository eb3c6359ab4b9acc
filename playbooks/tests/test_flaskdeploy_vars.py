"""playbooks/vars/flaskdeploy.yml: what the playbooks derive from the inventory.

Each test evaluates the vars file for a made-up inventory with a debug play on the
controller (no server is contacted). A host's `test_default_ipv4` in the inventory
becomes its default_ipv4 fact, as gathering would set it."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def evaluate(tmp_path, inventory, expression):
    """{host: value of expression} for every host of inventory."""
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(json.dumps([{
        "name": "Evaluate", "hosts": "all", "gather_facts": False, "connection": "local",
        "vars_files": [str(REPO / "playbooks/vars/flaskdeploy.yml")],
        "tasks": [
            {"name": "Set the facts", "when": "test_default_ipv4 is defined",
             "ansible.builtin.set_fact": {"cacheable": True, "default_ipv4": "{{ test_default_ipv4 }}"}},
            {"name": "Show", "ansible.builtin.debug": {"msg": f"VALUE {{{{ {expression} | to_json }}}}"}},
        ],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline")
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.json"), str(tmp_path / "play.yml")],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    values = {}
    for line in result.stdout.splitlines():
        if '"msg": "VALUE ' in line:
            host = line.split(" | ", 1)[0]
            payload = json.loads(line.split(" => ", 1)[1])["msg"].removeprefix("VALUE ")
            values[host] = json.loads(payload)
    return values


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
