"""flaskdeploy_systemd: ansible.builtin.systemd_service, with a unit already as asked
costing one shell command instead of the module.

When the task asks only that a loaded unit be started or stopped and/or enabled or
disabled (name, state, enabled, no_block; daemon_reload false), its state is read with
one `systemctl show` over the task's connection (no Python started on the host, no
module sent). When the unit is loaded, needs no daemon-reload, and is exactly as asked
(ActiveState active for started, inactive for stopped; UnitFileState enabled or
disabled), the task is done: ok, nothing changed.

When the task asks only that a unit be reloaded or restarted (name, state;
daemon_reload false), outside check mode, and that `systemctl show` says the unit is
loaded, active and needs no daemon-reload (a deploy reloading its WSGI server), the
action is one `systemctl reload` or `restart` under the task's become: changed, as
the module says, and the module's message when it fails ("Unable to reload service
X: ..."). The module would run the same command after reading the same properties.

In every other case (a daemon-reload, a unit missing, inactive, failed, static,
masked or changed on disk, check mode for a reload or restart, any other argument)
the arguments go unchanged to ansible.builtin.systemd_service, which does what it
always did, check mode included.
"""

import re
import shlex

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

# The arguments the shortcut understands; any other sends the task to the module.
SIMPLE = {"name", "state", "enabled", "no_block"}
ACTIVE = {"started": "active", "stopped": "inactive"}
PROPERTIES = ("LoadState", "ActiveState", "UnitFileState", "NeedDaemonReload")
# What systemctl does for a reload or restart of a running unit.
ACTIONS = {"reloaded": "reload", "restarted": "restart"}


def wanted(args):
    """{property: value} the unit must show for the task to be done already, or None
    when the task asks more than the shortcut reads."""
    # (daemon_reload false, as a task that reloads only after a change of its unit asks)
    if args.get("daemon_reload", False) is not False:
        return None
    if set(args) - SIMPLE - {"daemon_reload"} or not isinstance(args.get("name"), str) or not args["name"]:
        return None
    want = {"LoadState": "loaded", "NeedDaemonReload": "no"}
    if "state" in args:
        if args["state"] not in ACTIVE:
            return None
        want["ActiveState"] = ACTIVE[args["state"]]
    if "enabled" in args:
        if not isinstance(args["enabled"], bool):
            return None
        want["UnitFileState"] = "enabled" if args["enabled"] else "disabled"
    return want if len(want) > 2 else None


def action_for(args):
    """systemctl's command for a task that only reloads or restarts a unit, or None."""
    if args.get("daemon_reload", False) is not False or set(args) - {"name", "state", "daemon_reload"}:
        return None
    if not isinstance(args.get("name"), str) or not args["name"]:
        return None
    return ACTIONS.get(args.get("state"))


def errors_of(stderr):
    """A command's standard error without the line mitogen adds after it, as ssh
    would print it ("Shared connection to X closed.")."""
    text = to_text(stderr, errors="surrogate_or_replace")
    lines = text.splitlines(keepends=True)
    if lines and re.fullmatch(r"Shared connection to \S* closed\.\r?\n?", lines[-1]):
        lines.pop()
    return "".join(lines)


def shown(stdout):
    """systemctl show's Key=Value lines as a dict."""
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        want = wanted(args)
        action = action_for(args) if not self._task.check_mode else None
        if want is not None or action is not None:
            answer = self._low_level_execute_command(
                f"systemctl show --property={','.join(PROPERTIES)} -- {shlex.quote(args['name'])}", sudoable=False)
            unit = shown(answer.get("stdout", "")) if answer.get("rc") == 0 else {}
            if want is not None and all(unit.get(key) == value for key, value in want.items()):
                result.update(changed=False, name=args["name"], msg="as asked already",
                              status={key: unit[key] for key in want})
                return result
            running = {"LoadState": "loaded", "ActiveState": "active", "NeedDaemonReload": "no"}
            if action is not None and all(unit.get(key) == value for key, value in running.items()):
                # (with input, so that neither ssh nor mitogen gives it a terminal, which
                # would merge its errors into its output; systemctl reads none)
                done = self._low_level_execute_command(
                    f"systemctl {action} -- {shlex.quote(args['name'])} </dev/null", sudoable=True, in_data=b"\n")
                if done.get("rc") != 0:
                    result.update(failed=True, msg="Unable to %s service %s: %s" % (
                        action, args["name"], errors_of(done.get("stderr", ""))))
                else:
                    result.update(changed=True, name=args["name"], state="started",
                                  status={key: unit[key] for key in running})
                return result
        try:
            result.update(self._execute_module(module_name="ansible.builtin.systemd_service", module_args=args,
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
