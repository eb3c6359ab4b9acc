"""flaskdeploy_apt: ansible.builtin.apt, with a run that has nothing to install costing
one shell command instead of the apt module.

With state present (the default) and plain package names, the packages' state is read
with one `dpkg-query` over the task's connection (no Python started on the host, no
module sent). When every package is installed, the task is done: ok, nothing changed,
and apt's cache is not refreshed (cache_valid_time only matters to an install). In
every other case (a package missing or half-installed, a version, a wildcard, a .deb,
another state, dpkg-query failing) the arguments go unchanged to ansible.builtin.apt,
which does what it always did, check mode and diff included.

A no-op apt task otherwise runs the apt module: on Debian about a second under
Ansible's linear strategy (python3-apt's import and cache), where the query takes a
tenth of that.
"""

import re
import shlex

from ansible.plugins.action import ActionBase

# A name dpkg-query can answer for as it is: no version (=), release (/), pattern,
# architecture (:) or file.
PLAIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# ${db:Status-Abbrev}: "ii " for a package installed and configured.
INSTALLED = "ii "


def names(value):
    """The task's `name` as a list of names, or None when it is not plain names."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        return None
    value = [str(name) for name in value]
    return value if all(PLAIN.match(name) for name in value) else None


def all_installed(wanted, rc, stdout):
    """Whether dpkg-query's answer says every wanted package is installed."""
    if rc != 0:  # (also when one of them is unknown to dpkg)
        return False
    installed = set()
    for line in stdout.splitlines():
        status, _, package = line.partition("\t")
        if status == INSTALLED:
            installed.add(package)
    return set(wanted) <= installed


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        wanted = names(args.get("name", args.get("pkg", args.get("package"))))
        if wanted is not None and args.get("state", "present") == "present" and not args.get("deb"):
            query = "dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\n' -- " + " ".join(
                shlex.quote(name) for name in wanted)
            answer = self._low_level_execute_command(query, sudoable=False)
            if all_installed(wanted, answer.get("rc"), answer.get("stdout", "")):
                result.update(changed=False, msg=f"installed already: {', '.join(wanted)}")
                return result
        try:
            result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=args,
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
