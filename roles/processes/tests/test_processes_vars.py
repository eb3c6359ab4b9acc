"""The processes role's derived values, evaluated by Ansible on the controller for
made-up inventories (no server is contacted): what a Procfile runs, the units of
each process and job, and which app server runs the timers."""

import sys
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROLE.parents[1] / "molecule/shared"))
import ansible_eval  # noqa: E402


# The app as the playbooks pass it (flaskdeploy_app): the names the role reads.
APP = {"name": "shop", "user": "shop", "group": "shop", "code_dir": "/srv/shop/current",
       "config_dir": "/etc/shop", "env_digest_file": "/etc/shop/env.digest",
       "stale_units_tool": "/usr/local/sbin/flaskdeploy-stale-units"}


def evaluate(tmp_path, inventory, expression, extra=None, wired=False):
    """{host: value of expression} for every host of inventory. The role's defaults
    go in as the inventory's `all` vars, below host vars as role defaults are; wired:
    with what the playbooks derive from the inventory (playbooks/vars/flaskdeploy.yml,
    its filters from the repository's ansible.cfg)."""
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    values = ansible_eval.evaluate(
        tmp_path, {**inventory, "all": {"vars": defaults}}, [expression],
        vars_files=[ROLE / "vars/main.yml"] + ([ROLE.parents[1] / "playbooks/vars/flaskdeploy.json"] if wired else []),
        extra_vars={"processes_app": APP, **(extra or {})}, repo_config=wired)
    return {host: value for host, [value] in values.items()}


PROCFILE = """# comments and blank lines are not processes

web: gunicorn 'shop:create_app()' --bind 0.0.0.0:$PORT
release: flask db upgrade
worker:   rq worker --with-scheduler high default
mail_out: python -m shop.mailer   
"""


def test_a_procfile_runs_everything_but_web_and_release(tmp_path):
    one = {"appservers": {"hosts": {"web1": {}}}}
    values = evaluate(tmp_path, one, "processes_wanted", {"processes_procfile_text": PROCFILE})
    assert values["web1"] == {"worker": "rq worker --with-scheduler high default",
                              "mail_out": "python -m shop.mailer"}


def test_processes_commands_replace_the_procfile(tmp_path):
    one = {"appservers": {"hosts": {"web1": {}}}}
    values = evaluate(tmp_path, one, "processes_wanted",
                      {"processes_procfile_text": PROCFILE, "processes_commands": {"beat": "celery beat"}})
    assert values["web1"] == {"beat": "celery beat"}


def test_units_of_processes_instances_and_jobs(tmp_path):
    one = {"appservers": {"hosts": {"web1": {}}}}
    extra = {"processes_commands": {"worker": "rq worker", "clock": "python clock.py"},
             "processes_instances": {"worker": 3, "clock": 0},
             "processes_timers": {"digest": {"command": "flask digest", "on_calendar": "daily"}}}
    values = evaluate(tmp_path, one, "[processes_instance_units, processes_unit_files, processes_timer_units]", extra)
    instances, files, timers = values["web1"]
    assert instances == ["shop-worker@1.service", "shop-worker@2.service", "shop-worker@3.service"]
    assert sorted(files) == ["shop-clock@.service", "shop-digest.service", "shop-digest.timer", "shop-worker@.service"]
    assert timers == ["shop-digest.timer"]


def test_behind_balancers_only_the_first_app_server_runs_the_timers(tmp_path):
    cluster = {"appservers": {"hosts": {"app1": {}, "app2": {}, "app3": {"processes_timers_enabled": True}}},
               "loadbalancers": {"hosts": {"lb": {}}}}
    extra = {"processes_timers": {"digest": {"command": "flask digest", "on_calendar": "daily"}}}
    values = evaluate(tmp_path, cluster, "processes_timer_units", extra, wired=True)
    assert values["app1"] == ["shop-digest.timer"] and values["app2"] == [] and values["app3"] == ["shop-digest.timer"]


def test_app_servers_without_balancers_each_run_their_timers(tmp_path):
    # Each is a site of its own (the apps scenario's two servers, two apps).
    servers = {"appservers": {"hosts": {"app1": {}, "app2": {}}}}
    extra = {"processes_timers": {"digest": {"command": "flask digest", "on_calendar": "daily"}}}
    values = evaluate(tmp_path, servers, "processes_timer_units", extra, wired=True)
    assert values == {"app1": ["shop-digest.timer"], "app2": ["shop-digest.timer"]}

