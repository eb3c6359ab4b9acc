"""A task the roles or playbooks delegate to the controller (delegate_to: localhost)
runs with `connection: local`: where the inventory itself names localhost, as the
demo's `ansible-playbook -i localhost, playbooks/demo.yml` does, Ansible would
otherwise reach it over ssh (the demo failed so at "Pack the code tree on the
controller", a task since replaced by the flaskdeploy_stage action: ssh to localhost
port 22 refused)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONTROLLER = {"localhost", "127.0.0.1", "::1"}


def task_files(root):
    yield from sorted((root / "roles").glob("*/tasks/**/*.yml"))
    yield from sorted((root / "roles").glob("*/handlers/**/*.yml"))
    yield from sorted((root / "playbooks").glob("*.yml"))
    yield from sorted((root / "playbooks" / "tasks").glob("*.yml"))


def tasks(items):
    """Every task of a task list or a playbook, blocks and their rescue/always included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        for section in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            yield from tasks(item.get(section))
        if not any(k in item for k in ("hosts", "block", "import_playbook", "ansible.builtin.import_playbook")):
            yield item


def delegated_without_local_connection(root=REPO):
    found = []
    for path in task_files(root):
        for task in tasks(yaml.safe_load(path.read_text())):
            if str(task.get("delegate_to", "")).strip() in CONTROLLER and task.get("connection") != "local":
                found.append(f"{path.relative_to(root)}: {task.get('name')}")
    return found


def test_tasks_delegated_to_the_controller_run_locally():
    assert delegated_without_local_connection() == []


def test_the_check_finds_a_delegated_task_without_it(tmp_path):
    tasks_dir = tmp_path / "roles" / "web" / "tasks"
    tasks_dir.mkdir(parents=True)
    (tmp_path / "playbooks").mkdir()
    (tasks_dir / "main.yml").write_text(
        "- name: Block\n  block:\n"
        "    - name: Pack on the controller\n      ansible.builtin.command: 'true'\n      delegate_to: localhost\n"
        "    - name: Pack locally\n      ansible.builtin.command: 'true'\n      delegate_to: localhost\n"
        "      connection: local\n")
    assert delegated_without_local_connection(tmp_path) == ["roles/web/tasks/main.yml: Pack on the controller"]
