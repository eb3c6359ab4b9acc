"""plugins/action/flaskdeploy_stage.py: the code tree packed on the controller, copied
when the server's archive differs, unpacked by the release tool; skipped when the
stamp of the staged tree is this tree's."""

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1]
TOOL = PLUGINS.parent / "roles" / "app" / "files" / "flaskdeploy-release"


def load():
    spec = importlib.util.spec_from_file_location("flaskdeploy_stage_action",
                                                  PLUGINS / "action" / "flaskdeploy_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stage = load()


def listed(tree_dir):
    """The tree's entries as community.general.filetree lists them (the fields read)."""
    entries = []
    for path in sorted(tree_dir.rglob("*")):
        info = path.lstat()
        state = "link" if path.is_symlink() else "directory" if path.is_dir() else "file"
        entries.append({"root": str(tree_dir) + "/", "path": str(path.relative_to(tree_dir)), "src": str(path),
                        "state": state, "size": info.st_size, "mtime": info.st_mtime})
    return entries


def code(tree):
    (tree / "app" / "empty").mkdir(parents=True)
    (tree / "app" / "__init__.py").write_text("x = 1\n")
    (tree / "run.sh").write_text("#!/bin/sh\n")


def test_the_same_code_packs_into_the_same_bytes_and_the_same_listing_into_the_same_stamp(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for tree in (first, second):
        code(tree)
    os.utime(second / "run.sh", (1, 1))
    os.chmod(second / "run.sh", 0o700)
    packed = stage.pack(listed(first), str(tmp_path / "a.tar.gz"))
    assert packed["entries"] == 4
    assert packed["sha256"] == stage.pack(listed(second), str(tmp_path / "b.tar.gz"))["sha256"]
    # (the stamp sees the new modification time; the archive does not)
    assert stage.stamp_of(listed(first)) == stage.stamp_of(listed(first))
    assert stage.stamp_of(listed(first)) != stage.stamp_of(listed(second))
    (second / "run.sh").write_text("#!/bin/sh\necho changed\n")
    assert packed["sha256"] != stage.pack(listed(second), str(tmp_path / "b.tar.gz"))["sha256"]


PLAYBOOK = """
- name: Stage a tree four times, then once in check mode
  hosts: localhost
  gather_facts: false
  vars:
    task_args: &args
      tree: "{{ lookup('community.general.filetree', dir ~ '/code', wantlist=True) }}"
      staging: "{{ dir }}/srv/staging/path"
      pack_to: "{{ dir }}/controller/hello.tar.gz"
      unpack: ["{{ python }}", "{{ tool }}", stage, "{{ dir }}/srv"]
  tasks:
    - name: A new tree
      flaskdeploy_stage: *args
      register: first
    - name: The same tree
      flaskdeploy_stage: *args
      register: same
    - name: The same code, a new modification time
      ansible.builtin.file:
        path: "{{ dir }}/code/run.sh"
        modification_time: "202001010000.00"
    - name: The same bytes
      flaskdeploy_stage: *args
      register: touched
    - name: New code
      ansible.builtin.copy:
        dest: "{{ dir }}/code/run.sh"
        content: "#!/bin/sh\\necho new\\n"
        mode: "0644"
    - name: In check mode
      flaskdeploy_stage: *args
      check_mode: true
      register: checked
    - name: The new code
      flaskdeploy_stage: *args
      register: new
    - name: Keep the results
      ansible.builtin.copy:
        dest: "{{ dir }}/results.json"
        content: "{{ {'first': first, 'same': same, 'touched': touched, 'checked': checked, 'new': new} | to_json }}"
        mode: "0644"
"""


def test_through_ansible_a_tree_is_staged_once_and_copied_only_when_its_bytes_change(tmp_path):
    code(tmp_path / "code")
    (tmp_path / "srv" / "staging").mkdir(parents=True)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\naction_plugins = {PLUGINS / 'action'}\n")
    env = {**os.environ, "ANSIBLE_LIBRARY": str(PLUGINS / "modules"), "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}
    extra = {"dir": str(tmp_path), "tool": str(TOOL), "python": sys.executable,
             "ansible_python_interpreter": sys.executable}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "play.yml",
         "-e", json.dumps(extra)], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    runs = json.loads((tmp_path / "results.json").read_text())
    assert {key: runs["first"].get(key) for key in ("changed", "copied", "staged")} == \
        {"changed": True, "copied": True, "staged": True}
    assert runs["same"].get("skipped") is True and not runs["same"]["changed"]
    # A new modification time: unpacked again, nothing copied, nothing changed.
    assert {key: runs["touched"].get(key) for key in ("changed", "copied", "staged")} == \
        {"changed": False, "copied": False, "staged": True}
    assert {key: runs["checked"].get(key) for key in ("changed", "copied", "staged")} == \
        {"changed": True, "copied": True, "staged": False}
    assert {key: runs["new"].get(key) for key in ("changed", "copied", "staged")} == \
        {"changed": True, "copied": True, "staged": True}
    staged = tmp_path / "srv" / "staging" / "path"
    assert (staged / "run.sh").read_text() == "#!/bin/sh\necho new\n"
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*")) == \
        ["app", "app/__init__.py", "app/empty", "run.sh"]
    archive = tmp_path / "srv" / "staging" / "path.tar.gz"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert archive.read_bytes() == (tmp_path / "controller" / "hello.tar.gz").read_bytes()
    assert sorted(os.listdir(tmp_path / "srv" / "staging")) == ["path", "path.stamp", "path.tar.gz"]


def test_the_unpack_goes_to_the_command_action_where_this_one_was_loaded_from():
    """From ansible.cfg's action_plugins (ansible-core names the module
    ansible.plugins.action.<name>) or from the collection."""
    module = load()
    assert module.command_action("ansible.plugins.action.flaskdeploy_stage") == "ansible.legacy.flaskdeploy_command"
    assert module.command_action("ansible_collections.flaskdeploy.flaskdeploy.plugins.action.flaskdeploy_stage") == \
        "flaskdeploy.flaskdeploy.flaskdeploy_command"
    assert module.command_action("ansible_collections.ansible.legacy.plugins.action.flaskdeploy_stage") == \
        "ansible.legacy.flaskdeploy_command"
