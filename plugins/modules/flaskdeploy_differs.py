#!/usr/bin/python
"""flaskdeploy_differs: which of a role's files differ from what this run would write."""

DOCUMENTATION = r"""
module: flaskdeploy_differs
short_description: Say which files differ from the content, owner and mode a run would give them
description:
  - One call for a role's files instead of one module call per file on a run that
    changes nothing (a C(copy) or C(template) task whose file is already right still
    runs two modules on the host). The role passes each file's content as the
    controller renders it in O(contents) (from the C(ansible.builtin.file) lookup with
    C(rstrip=false), or C(ansible.builtin.template)), or its SHA-1; the file's task then
    runs only for the paths this module returns, and does what it always did
    (validation, handlers, diff, check mode).
  - A file differs when it is missing, is not a regular file (a link is not followed
    and differs), or its content, owner, group or mode is not the one given. A
    directory (C(state=directory)) differs when it is not one (a link to one differs)
    or its owner, group or mode is not the one given; a path that should be absent
    (C(state=absent)) differs when anything is there, a dangling link too. A line
    (C(state=line), as M(ansible.builtin.lineinfile) with a regexp keeps it) differs
    unless the file is a regular file (not a link) whose last line matching C(regexp)
    is C(line). Nothing is changed; check mode does the same.
options:
  files:
    description: >-
      Each a dict: C(path) and C(state) (C(file), the default, C(directory), C(absent)
      or C(line)); a file and a directory also C(mode) (an octal string such as
      C("0644")) and C(owner) and C(group) (names, C(root) when not given), a file its
      C(checksum) (SHA-1, hex) unless its content is in O(contents); a line C(regexp)
      (Python's C(re.search), as lineinfile) and C(line). Other keys (the task's own,
      such as C(src) or C(insertafter)) are not read.
    type: list
    elements: dict
    required: true
  contents:
    description: >-
      The content of each file of O(files) that has no C(checksum), in their order,
      as this run would write it (text, written as UTF-8). Not logged.
    type: list
    elements: str
    default: []
"""

RETURN = r"""
differ:
  description: The paths that differ, in the order given.
  type: list
  elements: str
"""

import grp
import hashlib
import os
import pwd
import re
import stat

from ansible.module_utils.basic import AnsibleModule

# The keys each state needs (owner and group default to root; other keys are not read).
KEYS = {"file": ("path", "mode"), "directory": ("path", "mode"), "absent": ("path",), "line": ("path", "regexp", "line")}


def sha1(fd):
    digest = hashlib.sha1()  # noqa: S324 (what Ansible's checksum filter and copy compare)
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return digest.hexdigest()
        digest.update(block)


def owned_as(info, wanted):
    """Whether the owner, group and mode of a stat result are wanted's."""
    try:
        owner, group = pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        return False
    return (owner, group) == (wanted.get("owner", "root"), wanted.get("group", "root")) and stat.S_IMODE(
        info.st_mode) == int(str(wanted["mode"]), 8)


def line_differs(wanted):
    """True unless the file's last line matching wanted['regexp'] is wanted['line']."""
    try:
        fd = os.open(wanted["path"], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True
        with os.fdopen(os.dup(fd), "rb") as handle:
            text = handle.read().decode("utf-8", "surrogateescape")
    finally:
        os.close(fd)
    # As lineinfile reads them: split at each newline only, each line with its newline
    # (the last maybe without), the regexp searched in that, the last match compared
    # with the line and a newline.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    pattern = re.compile(wanted["regexp"])
    matching = [line for line in lines if pattern.search(line)]
    return not matching or matching[-1] != wanted["line"] + "\n"


def differs(wanted):
    """True unless the path is as wanted: a regular file with that content, owner, group
    and mode; a directory with that owner, group and mode; nothing at all."""
    state = wanted.get("state", "file")
    if state == "absent":
        return os.path.lexists(wanted["path"])
    if state == "line":
        return line_differs(wanted)
    if state == "directory":
        try:
            info = os.lstat(wanted["path"])
        except OSError:
            return True
        return not (stat.S_ISDIR(info.st_mode) and owned_as(info, wanted))
    try:
        fd = os.open(wanted["path"], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, a link (ELOOP), unreadable
        return True
    try:
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) and owned_as(info, wanted)):
            return True
        return sha1(fd) != wanted["checksum"].lower()
    finally:
        os.close(fd)


def problem(wanted):
    """What is wrong with one entry of `files`, or None."""
    if not isinstance(wanted, dict):
        return f"each entry must be a dict: {wanted!r}"
    state = wanted.get("state", "file")
    if state not in KEYS:
        return f"state must be one of {', '.join(KEYS)}: {wanted!r}"
    missing = [key for key in KEYS[state] if key not in wanted]
    if missing:
        return f"each {state} needs {', '.join(KEYS[state])}: {wanted.get('path', wanted)!r} has no {', '.join(missing)}"
    if not str(wanted["path"]).startswith("/"):
        return f"path must be absolute: {wanted['path']!r}"
    if state == "line":
        try:
            re.compile(str(wanted["regexp"]))
        except re.error as error:
            return f"regexp of {wanted['path']}: {error}"
    if state in ("absent", "line"):
        return None
    if state == "file" and "checksum" in wanted:
        checksum = str(wanted["checksum"])
        if len(checksum) != 40 or any(c not in "0123456789abcdefABCDEF" for c in checksum):
            return f"checksum must be a SHA-1 in hex: {wanted['path']}"
    mode = str(wanted["mode"])
    if not (3 <= len(mode) <= 4 and all(c in "01234567" for c in mode)):
        return f"mode must be octal such as '0644': {wanted['path']}: {mode!r}"
    return None


def with_checksums(files, contents):
    """The entries, each file without a checksum given the SHA-1 of its content (in
    order); or a message when the contents do not match them in number."""
    contents = list(contents)
    needing = [w for w in files if w.get("state", "file") == "file" and "checksum" not in w]
    if len(needing) != len(contents):
        return None, f"{len(needing)} files without a checksum but {len(contents)} contents"
    given, result = iter(contents), []
    for wanted in files:
        if wanted.get("state", "file") == "file" and "checksum" not in wanted:
            content = next(given).encode("utf-8", "surrogateescape")
            wanted = dict(wanted, checksum=hashlib.sha1(content).hexdigest())  # noqa: S324 (as copy compares)
        result.append(wanted)
    return result, None


def main():
    module = AnsibleModule(argument_spec={"files": {"type": "list", "elements": "dict", "required": True},
                                          "contents": {"type": "list", "elements": "str", "default": [],
                                                       "no_log": True}},
                           supports_check_mode=True)
    files = module.params["files"]
    for wanted in files:
        message = problem(wanted)
        if message:
            module.fail_json(msg=message)
    files, message = with_checksums(files, module.params["contents"])
    if message:
        module.fail_json(msg=message)
    module.exit_json(changed=False, differ=[w["path"] for w in files if differs(w)])


if __name__ == "__main__":
    main()
