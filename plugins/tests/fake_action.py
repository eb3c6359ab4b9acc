"""The action plugins' tests' helpers: an action's run() with the connection faked (one
shell command answered, the module calls recorded), and tasks run through Ansible."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from ansible.plugins.action import ActionBase

PLUGINS = Path(__file__).resolve().parents[1]


def load_action(name):
    """plugins/action/<name>.py, as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_action", PLUGINS / "action" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def through_ansible(tmp_path, tasks, registered):
    """tasks run by ansible-playbook on this machine (local connection, this Python, the
    project's actions and modules, Ansible's defaults otherwise; the run must pass):
    {name: its result} for each variable named in registered."""
    out = tmp_path / "out.json"
    content = "{{ {%s} | to_json }}" % ", ".join(f"'{name}': {name}" for name in registered)
    tasks = [*tasks, {"ansible.builtin.copy": {"dest": str(out), "content": content}}]
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {**os.environ, "ANSIBLE_ACTION_PLUGINS": str(PLUGINS / "action"), "ANSIBLE_LIBRARY": str(PLUGINS / "modules"),
           "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "play.yml", "-e", f"ansible_python_interpreter={sys.executable}"],
                            env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads(out.read_text())


class Connection:
    class _shell:
        tmpdir = None


class Task:
    def __init__(self, args, check_mode=False):
        self.args, self.check_mode = args, check_mode


def run(monkeypatch, action_module, args, rc, stdout, check_mode=False, answer=None):
    """(result, commands run, modules run) of action_module.ActionModule for args. Each
    command is answered with rc and stdout, or by answer(command, sudoable) when given."""
    commands, modules = [], []
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    plugin = object.__new__(action_module.ActionModule)
    plugin._task, plugin._connection = Task(args, check_mode), Connection()
    answer = answer or (lambda cmd, sudoable: {"rc": rc, "stdout": stdout})
    plugin._low_level_execute_command = lambda cmd, sudoable=True, in_data=None: commands.append(cmd) or answer(
        cmd, sudoable)
    plugin._execute_module = lambda module_name, module_args, task_vars: modules.append(
        (module_name, module_args)) or {"changed": True}
    plugin._remove_tmp_path = lambda path: None
    return plugin.run(task_vars={}), commands, modules
