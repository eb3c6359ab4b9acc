"""plugins/modules/flaskdeploy_differs.py: which files a role's copy and template tasks
would change, in one module call."""

import hashlib
import importlib.util
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1]


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


module = load("flaskdeploy_differs", PLUGINS / "modules" / "flaskdeploy_differs.py")
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = __import__("grp").getgrgid(os.getgid()).gr_name


def wanted(path, content=b"text\n", mode="0644", owner=ME, group=MY_GROUP):
    return {"path": str(path), "checksum": hashlib.sha1(content).hexdigest(), "owner": owner, "group": group,
            "mode": mode}


def test_a_file_as_wanted_does_not_differ_and_each_difference_does(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"text\n")
    path.chmod(0o644)
    assert not module.differs(wanted(path))
    assert module.differs(wanted(path, content=b"text"))  # content (a newline less)
    assert module.differs(wanted(path, mode="0755"))
    assert module.differs(wanted(path, owner="nobody" if ME != "nobody" else "root"))
    assert module.differs(wanted(path, group="nogroup" if MY_GROUP != "nogroup" else "root"))
    assert module.differs(wanted(tmp_path / "missing"))


def test_a_link_a_directory_or_a_fifo_differs_and_nothing_is_followed_or_waited_for(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"text\n")
    target.chmod(0o644)
    (tmp_path / "link").symlink_to(target)
    assert module.differs(wanted(tmp_path / "link"))  # though its target is as wanted
    (tmp_path / "dir").mkdir()
    assert module.differs(wanted(tmp_path / "dir"))
    os.mkfifo(tmp_path / "fifo")
    assert module.differs(wanted(tmp_path / "fifo"))  # (O_NONBLOCK: no writer needed)


def test_a_directory_and_an_absent_path(tmp_path):
    def directory(path, mode="0750", owner=ME, group=MY_GROUP):
        return {"path": str(path), "state": "directory", "owner": owner, "group": group, "mode": mode}

    (tmp_path / "d").mkdir()
    (tmp_path / "d").chmod(0o750)
    assert not module.differs(directory(tmp_path / "d"))
    assert module.differs(directory(tmp_path / "d", mode="0755"))
    assert module.differs(directory(tmp_path / "d", owner="nobody" if ME != "nobody" else "root"))
    assert module.differs(directory(tmp_path / "missing"))
    (tmp_path / "link").symlink_to(tmp_path / "d")
    assert module.differs(directory(tmp_path / "link"))  # though it leads to the directory
    (tmp_path / "f").write_text("")
    assert module.differs(directory(tmp_path / "f"))
    assert not module.differs({"path": str(tmp_path / "missing"), "state": "absent"})
    assert module.differs({"path": str(tmp_path / "f"), "state": "absent"})
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    assert module.differs({"path": str(tmp_path / "dangling"), "state": "absent"})


def test_a_line_as_lineinfile_keeps_it(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text("worker_processes auto;\nevents {\n\tworker_connections 768;\n}\n")

    def line(regexp, text, path=conf):
        return {"path": str(path), "state": "line", "regexp": regexp, "line": text}

    assert not module.differs(line(r"^\s*worker_connections\s", "\tworker_connections 768;"))
    assert module.differs(line(r"^\s*worker_connections\s", "\tworker_connections 4096;"))
    assert module.differs(line(r"^worker_rlimit_nofile\s", "worker_rlimit_nofile 8192;"))  # to be added
    conf.write_text(conf.read_text() + "\tworker_connections 1024;\n")  # the last match counts
    assert module.differs(line(r"^\s*worker_connections\s", "\tworker_connections 768;"))
    (tmp_path / "link").symlink_to(conf)
    assert module.differs(line(r"^\s*worker_connections\s", "\tworker_connections 1024;", tmp_path / "link"))
    assert module.differs(line("x", "x", tmp_path / "missing"))
    # lineinfile would rewrite a last line without its newline, or with a CR before it
    conf.write_text("worker_processes auto;\nworker_shutdown_timeout 10s;")
    assert module.differs(line(r"^worker_shutdown_timeout\s", "worker_shutdown_timeout 10s;"))
    conf.write_text("worker_processes auto;\r\nworker_shutdown_timeout 10s;\r\n")
    assert module.differs(line(r"^worker_shutdown_timeout\s", "worker_shutdown_timeout 10s;"))
    conf.write_text("worker_processes auto;\nworker_shutdown_timeout 10s;\n")
    assert not module.differs(line(r"^worker_shutdown_timeout\s", "worker_shutdown_timeout 10s;"))


@pytest.mark.parametrize("entry, message", [
    ({"path": "/x", "state": "line", "regexp": "(", "line": "x"}, "regexp of /x"),
    ({"path": "/x", "state": "line", "regexp": "x"}, "'/x' has no line"),
    ({"path": "/x", "state": "gone"}, "state must be one of"),
    ({"state": "absent"}, "has no path"),
    ({"path": "/x", "state": "directory", "owner": "root"}, "'/x' has no mode"),
    ({"path": "/x", "state": "directory", "owner": "root", "group": "root", "mode": "755x"}, "octal"),
    ({"path": "relative", "checksum": "0" * 40, "owner": "root", "group": "root", "mode": "0644"}, "absolute"),
    ({"path": "/x", "checksum": "abc", "owner": "root", "group": "root", "mode": "0644"}, "SHA-1"),
    ({"path": "/x", "checksum": "0" * 40, "owner": "root", "group": "root", "mode": "rw-r--r--"}, "octal"),
    ({"path": "/x", "checksum": "0" * 40, "owner": "root", "group": "root"}, "'/x' has no mode"),
])
def test_a_malformed_entry_is_refused_by_name(entry, message):
    assert message in module.problem(entry)


def test_the_task_keys_of_an_entry_are_not_read_and_root_owns_by_default(tmp_path):
    assert module.problem({"path": "/x", "mode": "0644", "src": "tool", "insertafter": "^x"}) is None
    path = tmp_path / "f"
    path.write_bytes(b"text\n")
    path.chmod(0o644)
    entry = {"path": str(path), "mode": "0644", "checksum": hashlib.sha1(b"text\n").hexdigest()}
    assert module.differs(entry) is (ME != "root" or MY_GROUP != "root")


def test_contents_give_the_files_without_a_checksum_theirs_in_order():
    files = [{"path": "/usr/local/sbin/tool", "mode": "0755", "src": "tool"},
             {"path": "/etc/x", "state": "directory", "mode": "0755"},
             {"path": "/etc/given", "mode": "0644", "checksum": "0" * 40},
             {"path": "/etc/x.conf", "mode": "0640", "owner": "app", "group": "adm"}]
    result, message = module.with_checksums(files, ["#!/bin/sh\n", "é\n"])
    assert message is None
    assert [entry.get("checksum") for entry in result] == [
        hashlib.sha1(b"#!/bin/sh\n").hexdigest(), None, "0" * 40, hashlib.sha1("é\n".encode()).hexdigest()]
    assert module.with_checksums(files, ["x"]) == (None, "2 files without a checksum but 1 contents")


# What the roles rely on: the checksum the controller renders (file and template
# lookups) is the one of the file the copy and template tasks write, so that a file
# they just wrote does not differ, and one changed by hand does.
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    greeting: hello
    files:
      - {src: tool.sh, path: "{{ dir }}/tool.sh", mode: "0755"}
      - {src: unit.j2, path: "{{ dir }}/unit.conf", mode: "0644"}
    contents: >-
      {{ query('ansible.builtin.file', files[0].src, rstrip=false) + query('ansible.builtin.template', files[1].src) }}
    mine: "{{ files | map('combine', {'owner': me, 'group': my_group}) }}"
  tasks:
    - name: before
      flaskdeploy_differs: {files: "{{ mine }}", contents: "{{ contents }}"}
      register: before
    - ansible.builtin.copy: {src: tool.sh, dest: "{{ dir }}/tool.sh", mode: "0755", owner: "{{ me }}", group: "{{ my_group }}"}
    - ansible.builtin.template: {src: unit.j2, dest: "{{ dir }}/unit.conf", mode: "0644", owner: "{{ me }}", group: "{{ my_group }}"}
    - name: after
      flaskdeploy_differs: {files: "{{ mine }}", contents: "{{ contents }}"}
      register: after
    - ansible.builtin.shell: "echo '# by hand' >> {{ dir }}/unit.conf"
    - name: changed by hand
      flaskdeploy_differs: {files: "{{ mine }}", contents: "{{ contents }}"}
      register: by_hand
    - ansible.builtin.copy:
        dest: "{{ dir }}/result.json"
        content: "{{ {'before': before.differ, 'after': after.differ, 'by_hand': by_hand.differ} | to_json }}"
"""


def test_through_ansible_what_copy_and_template_wrote_does_not_differ(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "files" / "tool.sh").write_text("#!/bin/sh\necho no newline at the end")
    (tmp_path / "templates" / "unit.j2").write_text(
        "# {{ ansible_managed }}\n[Unit]\n{% if greeting %}\nDescription={{ greeting }}\n{% endif %}\n"
        "Path={{ dir }}\n\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "ANSIBLE_LIBRARY": str(PLUGINS / "modules"), "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "play.yml",
         "-e", json.dumps({"dir": str(out), "me": ME, "my_group": MY_GROUP, "ansible_python_interpreter": sys.executable})],
        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    differ = json.loads((out / "result.json").read_text())
    assert differ == {"before": [f"{out}/tool.sh", f"{out}/unit.conf"], "after": [], "by_hand": [f"{out}/unit.conf"]}
