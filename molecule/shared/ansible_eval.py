"""Values as Ansible evaluates them, on the controller, for a made-up inventory: the
one helper behind the unit tests of role defaults and vars and of the playbooks' vars
(no server is contacted). A debug task per expression on every host; its oneline
output read back as JSON."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def evaluate(tmp_path, inventory, expressions, vars_files=(), extra_vars=None, repo_config=False, facts=None):
    """{host: [value of each expression]} for every host of inventory (a dict, as
    ansible-inventory's JSON; or an inline list such as "localhost,"). vars_files go
    in the play; extra_vars with -e; repo_config: with the repository's ansible.cfg
    (its filters and modules); facts: {fact: the host variable that holds its value},
    set as gathering would on the hosts that have it."""
    if isinstance(inventory, dict):
        (tmp_path / "hosts.json").write_text(json.dumps(inventory))
        inventory = str(tmp_path / "hosts.json")
    tasks = [{"name": f"Set {fact}", "when": f"{var} is defined",
              "ansible.builtin.set_fact": {"cacheable": True, fact: "{{ %s }}" % var}}
             for fact, var in (facts or {}).items()]
    tasks += [{"name": f"Show {i}", "ansible.builtin.debug": {"msg": "VALUE %d {{ %s | to_json }}" % (i, expression)}}
              for i, expression in enumerate(expressions)]
    (tmp_path / "play.yml").write_text(json.dumps([{
        "name": "Evaluate", "hosts": "all", "gather_facts": False, "connection": "local",
        "vars_files": [str(path) for path in vars_files], "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.oneline",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               **({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")} if repo_config else {}))
    result = subprocess.run(["ansible-playbook", "-i", inventory, str(tmp_path / "play.yml"),
                             *(["-e", json.dumps(extra_vars)] if extra_vars else [])],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    values = {}
    for line in result.stdout.splitlines():
        if '"msg": "VALUE ' in line:
            host = line.split(" | ", 1)[0]
            index, value = json.loads(line.split(" => ", 1)[1])["msg"].removeprefix("VALUE ").split(" ", 1)
            values.setdefault(host, [None] * len(expressions))[int(index)] = json.loads(value)
    return values
