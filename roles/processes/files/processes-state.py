"""What the processes role finds of an app's processes on the host, in one call: run
by root as `python3 -c <this file> ARGS` (tasks/main.yml), printing JSON.

  procfile  the Procfile's text (--procfile): read without following a link at its
            last component (the release could point it into the data directory,
            which the app changes): {"exists", "regular", "text"}.
  units     the unit files in --unit-dir named --prefix*.service or *.timer with a
            line holding --marker (the ones this role installed), by name.
  scripts   every entry of --script-dir (the start scripts), by name (null: no such
            directory); script_dir: the directory itself (null: none).
  links     the paths of the entries named --prefix* in each --wants-dir (the enabled
            units' links).
  active    the active state of each loaded unit named --prefix* (systemctl).
  reload    those of them whose unit file changed since systemd read it (a run cut
            between writing it and systemd's daemon-reload).

A file is {"type", "sha1", "mode", "uid", "gid"} (type: file, directory, link or other;
sha1 null when it is not a regular file).
Nothing is changed, nothing the app owns is opened but the Procfile (O_NOFOLLOW,
O_NONBLOCK: a FIFO does not block the run).
"""

import argparse
import hashlib
import json
import os
import stat
import subprocess


def describe(path):
    info = os.lstat(path)
    digest = None
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            digest = hashlib.sha1(handle.read()).hexdigest()
    kind = "file" if stat.S_ISREG(info.st_mode) else "directory" if stat.S_ISDIR(info.st_mode) \
        else "link" if stat.S_ISLNK(info.st_mode) else "other"
    return {"type": kind, "sha1": digest, "mode": format(stat.S_IMODE(info.st_mode), "04o"),
            "uid": info.st_uid, "gid": info.st_gid}


def procfile(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"exists": False, "regular": False, "text": None}
    except OSError:
        # ELOOP: a link; anything else that exists but cannot be opened as a file.
        return {"exists": os.path.lexists(path), "regular": False, "text": None}
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return {"exists": True, "regular": False, "text": None}
        return {"exists": True, "regular": True, "text": handle.read().decode("utf-8", "replace")}


def units(unit_dir, prefix, marker):
    found = {}
    for name in sorted(os.listdir(unit_dir)):
        if not name.startswith(prefix) or not name.endswith((".service", ".timer")):
            continue
        path = os.path.join(unit_dir, name)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            continue
        with open(path, "rb") as handle:
            if any(marker in line for line in handle.read().decode("utf-8", "replace").splitlines()):
                found[name] = describe(path)
    return found


def listing(directory):
    """The entries of a directory, by name; None when it does not exist."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    return {name: describe(os.path.join(directory, name)) for name in names}


def active(prefix):
    result = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full", "--", prefix + "*"],
        capture_output=True, text=True, check=True)
    states = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            states[fields[0]] = fields[2]
    return states


def need_reload(units):
    if not units:
        return []
    result = subprocess.run(["systemctl", "show", "--property=Id,NeedDaemonReload", "--", *sorted(units)],
                            capture_output=True, text=True, check=True)
    stale, unit = [], None
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "Id":
            unit = value
        elif key == "NeedDaemonReload" and value == "yes" and unit:
            stale.append(unit)
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--procfile")
    parser.add_argument("--unit-dir", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--script-dir", required=True)
    parser.add_argument("--wants-dir", action="append", default=[])
    args = parser.parse_args(argv)
    states = active(args.prefix)
    state = {
        "procfile": procfile(args.procfile) if args.procfile else None,
        "units": units(args.unit_dir, args.prefix, args.marker),
        "scripts": listing(args.script_dir),
        "script_dir": describe(args.script_dir) if os.path.lexists(args.script_dir) else None,
        "links": [os.path.join(d, name) for d in args.wants_dir for name in listing(d) or {} if name.startswith(args.prefix)],
        "active": states,
        "reload": need_reload(states),
    }
    print(json.dumps(state, sort_keys=True))


if __name__ == "__main__":
    main()
