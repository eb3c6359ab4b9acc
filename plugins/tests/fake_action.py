"""An action plugin's run() with the connection faked, for the apt and systemd actions'
tests: one shell command answered, the module calls recorded."""

from ansible.plugins.action import ActionBase


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
