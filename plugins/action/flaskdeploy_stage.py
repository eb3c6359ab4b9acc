"""flaskdeploy_stage: the app's code tree from the controller into the server's staging
directory, in one task (roles/app/tasks/source-path.yml).

1. One command over the task's connection (no Python started on the host) reads the
   SHA-256 of the stamp the last staging wrote (`<staging>.stamp`) and of the
   archive it kept (`<staging>.tar.gz`). When the stamp is this tree's (stamp_of:
   every source file's path, type, size and modification time, rsync's quick
   check), the task is skipped: the tree is staged already.
2. Otherwise the tree (`tree`, listed once: the entries community.general.filetree
   lists) is packed in this process into one gzip'd tar at `pack_to` on the
   controller (see pack: the same code makes the same bytes), and copied to the host
   only when the host's archive has other bytes (a fresh checkout of the same code
   has new modification times, not new bytes).
3. `unpack` (the release tool's `stage` command, up to its root argument) runs
   through the flaskdeploy_command action (one command, no module) with
   `--archive=<staging>.tar.gz --to=<staging> --stamp-from-stdin`, the stamp on its stdin, and `--incoming=<the copy>` when one
   was made: the tool puts the copy in place as the archive (root's, 0600), unpacks
   it and writes the stamp once the tree is in place. Its JSON result says whether
   the tree changed.

Changed: the archive was copied, or the staged tree changed. In check mode nothing
is copied or unpacked: changed when the archive would be copied.
"""

import gzip
import hashlib
import io
import json
import os
import shlex
import tarfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGS = {"tree", "staging", "pack_to", "unpack"}


def command_action(module_name):
    """flaskdeploy_command's name where this plugin was loaded from (its Python module's
    name): beside it in a collection, or in the directories ansible.cfg names."""
    parts = module_name.split(".")
    if parts[0] == "ansible_collections" and len(parts) > 3 and parts[1:3] != ["ansible", "legacy"]:
        return f"{parts[1]}.{parts[2]}.flaskdeploy_command"
    return "ansible.legacy.flaskdeploy_command"


def stamp_of(tree):
    """What the stamp records of the tree (rsync's quick check): each entry's source
    directory, path and type, and a file's size and modification time, sorted by
    path. The same tree listed again makes the same stamp."""
    lines = []
    for entry in sorted(tree, key=lambda entry: entry["path"]):
        line = "%s %s %s" % (entry.get("root", ""), entry["path"], entry.get("state", ""))
        if entry.get("state") == "file":
            line += " %d %.6f" % (int(entry.get("size", 0)), float(entry.get("mtime", 0)))
        lines.append(line + "\n")
    return "".join(lines)


def pack(tree, out):
    """The directories and regular files of `tree` (filetree entries: path, state,
    src; links and others are left out) as a gzip'd tar written anew at `out` (its
    directory made if missing, 0700; a temporary file renamed over it): entries
    sorted, owner root, directories 0755 and files 0644, times zero, so that the same
    code makes the same bytes. Returns {"path", "sha256", "entries"}."""
    entries = sorted((entry for entry in tree if entry.get("state") in ("directory", "file")),
                     key=lambda entry: entry["path"])
    os.makedirs(os.path.dirname(os.path.abspath(out)), mode=0o700, exist_ok=True)
    temporary = "%s.%d.tmp" % (out, os.getpid())
    try:
        write_archive(entries, temporary)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    os.rename(temporary, out)
    digest = hashlib.sha256()
    with open(out, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": out, "sha256": digest.hexdigest(), "entries": len(entries)}


def write_archive(entries, temporary):
    with open(temporary, "wb") as raw:
        # (gzip's header holds a time and a name: none, for the same bytes each time)
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
            with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
                for entry in entries:
                    name = entry["path"].strip("/")
                    if not name or name.startswith("../") or "/../" in "/%s/" % name:
                        raise AnsibleActionFail("flaskdeploy_stage: bad path in the tree: %r" % entry["path"])
                    info = tarfile.TarInfo(name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    info.mtime = 0
                    if entry["state"] == "directory":
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755
                        archive.addfile(info)
                    else:
                        with open(entry["src"], "rb") as handle:
                            data = handle.read()
                        info.mode = 0o644
                        info.size = len(data)
                        archive.addfile(info, io.BytesIO(data))


def sums(stdout, paths):
    """{path: SHA-256} of sha256sum's output, for the paths asked (a name sha256sum
    had to escape matches none: that file is taken as different)."""
    found = {}
    for line in stdout.splitlines():
        digest, _, name = line.partition("  ")
        if name in paths and len(digest) == 64:
            found[name] = digest
    return found


class ActionModule(ActionBase):
    # (a temporary directory on the host only when the archive is copied)
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        missing = sorted(ARGS - set(args))
        if missing or set(args) - ARGS:
            raise AnsibleActionFail("flaskdeploy_stage takes %s (missing: %s, unknown: %s)"
                                    % (", ".join(sorted(ARGS)), ", ".join(missing) or "none",
                                       ", ".join(sorted(set(args) - ARGS)) or "none"))
        if not isinstance(args["unpack"], list) or not all(isinstance(a, str) for a in args["unpack"]):
            raise AnsibleActionFail("flaskdeploy_stage: unpack is a command line, a list of strings")
        staging = args["staging"]
        stamp_path, archive = staging + ".stamp", staging + ".tar.gz"
        try:
            stamp_text = stamp_of(args["tree"])
        except (KeyError, TypeError, ValueError) as error:
            raise AnsibleActionFail("flaskdeploy_stage: a tree entry is not as filetree lists it: %s" % error)
        stamp = stamp_text.encode("utf-8", "surrogateescape")

        # (exit 0 whatever sha256sum finds: another exit is the shell's or become's)
        answer = self._low_level_execute_command(
            "command -v sha256sum >/dev/null || exit 127; sha256sum -- %s %s 2>/dev/null; exit 0"
            % (shlex.quote(stamp_path), shlex.quote(archive)))
        if answer.get("rc") != 0:
            raise AnsibleActionFail("flaskdeploy_stage: could not read the staged tree's stamp on the host"
                                    " (exit %s%s): %s"
                                    % (answer.get("rc"), ", sha256sum missing" if answer.get("rc") == 127 else "",
                                       (answer.get("stderr") or answer.get("stdout") or "").strip()[-2000:]))
        held = sums(answer.get("stdout", ""), {stamp_path, archive})
        if held.get(stamp_path) == hashlib.sha256(stamp).hexdigest():
            result.update(skipped=True, changed=False, skip_reason="the staged tree's stamp is this tree's")
            return result

        out = os.path.expanduser(args["pack_to"])
        try:
            packed = pack(args["tree"], out)
        except (OSError, KeyError, TypeError) as error:
            raise AnsibleActionFail("flaskdeploy_stage: could not pack the code tree into %s: %s" % (out, error))
        copied = held.get(archive) != packed["sha256"]
        if self._task.check_mode:
            result.update(changed=copied, copied=copied, staged=False, entries=packed["entries"])
            return result

        argv = list(args["unpack"]) + ["--archive=" + archive, "--to=" + staging, "--stamp-from-stdin"]
        try:
            if copied:
                self._make_tmp_path()
                incoming = self._connection._shell.join_path(self._connection._shell.tmpdir, "code.tar.gz")
                self._transfer_file(packed["path"], incoming)
                self._fixup_perms2((self._connection._shell.tmpdir, incoming))
                argv.append("--incoming=" + incoming)
            # One command under become (flaskdeploy_command: no module), the stamp as
            # it is on its input.
            task = self._task.copy()
            task.args = {"argv": argv, "stdin": stamp_text, "stdin_add_newline": False}
            command = self._shared_loader_obj.action_loader.get(
                command_action(__name__), task=task, connection=self._connection, play_context=self._play_context,
                loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
            if command is None:
                raise AnsibleActionFail("flaskdeploy_stage: the action %s is missing" % command_action(__name__))
            unpacked = command.run(task_vars=task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.update(unpacked)
        result.update(copied=copied, entries=packed["entries"], sha256=packed["sha256"])
        if unpacked.get("failed") or unpacked.get("rc") != 0:
            result.update(failed=True, changed=copied, staged=False,
                          msg=unpacked.get("stderr") or unpacked.get("msg") or "the unpack command failed")
            return result
        try:
            staged = json.loads(unpacked["stdout"])
        except (KeyError, ValueError) as error:
            raise AnsibleActionFail("flaskdeploy_stage: the unpack command printed no JSON result") from error
        result.update(changed=copied or bool(staged.get("changed")), staged=True, digest=staged.get("digest"))
        return result
