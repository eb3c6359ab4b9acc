"""flaskdeploy_apt: ansible.builtin.apt, with a run that has nothing to install costing
one shell command instead of the apt module.

With state present (the default) and plain package names, the packages' state is read
with one command over the task's connection (`dpkg-query`, then the packages apt marks
automatic, read from its extended_states file; no Python started on the host, no
module sent). When every package is installed and
marked as installed by hand, the task is done: ok, nothing changed, and apt's cache is
not refreshed (cache_valid_time only matters to an install). In every other case (a
package missing or half-installed, one installed only as another's dependency, which
the module marks as installed by hand so that autoremove keeps it, a version, a
wildcard, a .deb, another state, a command failing) the arguments go unchanged to
ansible.builtin.apt, which does what it always did, check mode and diff included.

A no-op apt task otherwise runs the apt module: on Debian about a second under
Ansible's linear strategy (python3-apt's import and cache), where the query takes a
tenth of that. (`apt-mark showauto` answers the same from the same file but loads
apt's cache first: 0.33 s of CPU a task where awk takes 3 ms.)
"""

import re
import shlex

from ansible.plugins.action import ActionBase

# A name dpkg-query can answer for as it is: no version (=), release (/), pattern,
# architecture (:) or file.
PLAIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# ${db:Status-Abbrev}: "ii " for a package installed and configured.
INSTALLED = "ii "
# Between dpkg-query's lines and the packages marked automatic.
AUTO = "## auto"
# Where apt keeps which packages were installed only as another's dependency (what
# `apt-mark showauto` reads): a stanza per package and architecture, with
# "Auto-Installed: 1" for those. No file: none is. One that is not a regular file
# or cannot be read: the query fails and the module decides.
EXTENDED_STATES = "/var/lib/apt/extended_states"
# The name of every package with a stanza marked automatic (any architecture: a
# name marked for one goes to the module, which decides).
AUTO_NAMES = ("awk 'BEGIN {RS = \"\"; FS = \"\\n\"} {p = \"\"; a = 0; for (i = 1; i <= NF; i++) {"
              "if ($i ~ /^Package: /) p = substr($i, 10); if ($i == \"Auto-Installed: 1\") a = 1}"
              " if (a && p != \"\") print p}' ")


def names(value):
    """The task's `name` as a list of names, or None when it is not plain names."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        return None
    value = [str(name) for name in value]
    return value if all(PLAIN.match(name) for name in value) else None


def query(wanted, states=EXTENDED_STATES):
    """The command: each package's dpkg status, then the packages apt marks automatic
    (all of them: a few dozen names on a server)."""
    quoted, path = " ".join(shlex.quote(name) for name in wanted), shlex.quote(states)
    return (f"dpkg-query -W -f '${{db:Status-Abbrev}}\\t${{Package}}\\n' -- {quoted}"
            f" && echo '{AUTO}' && {{ [ ! -e {path} ] || {{ [ -f {path} ] && [ -r {path} ] && {AUTO_NAMES}{path}; }}; }}")


def all_installed(wanted, rc, stdout):
    """Whether the answer says every wanted package is installed and none is marked
    automatic (the apt module would mark it manual)."""
    if rc != 0:  # (also when one of them is unknown to dpkg)
        return False
    status_lines, marker, auto_lines = stdout.partition(AUTO + "\n")
    if not marker:
        return False
    installed = set()
    for line in status_lines.splitlines():
        status, _, package = line.partition("\t")
        if status == INSTALLED:
            installed.add(package)
    automatic = {line.strip() for line in auto_lines.splitlines() if line.strip()}
    return set(wanted) <= installed and not set(wanted) & automatic


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        wanted = names(args.get("name", args.get("pkg", args.get("package"))))
        if wanted is not None and args.get("state", "present") == "present" and not args.get("deb"):
            answer = self._low_level_execute_command(query(wanted), sudoable=False)
            if all_installed(wanted, answer.get("rc"), answer.get("stdout", "")):
                result.update(changed=False, msg=f"installed already: {', '.join(wanted)}")
                return result
        try:
            result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=args,
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
