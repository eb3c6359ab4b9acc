"""Each role's inputs are its own variables (documented in its meta/argument_specs.yml):
the playbooks wire one role's values into another's (playbooks/vars/flaskdeploy.yml).
A role whose defaults, vars, tasks, handlers or templates name another role's
variables, or the playbooks' flaskdeploy_* ones, depends on an unwritten contract."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
# Text for people that names another role's variable (a message telling the user
# which variable to set), not a read of it.
MENTIONS = {("processes", "app_migrate_command")}
# Names with the prefix that are no variables: the project's module and its WSGI
# entry point's file.
NOT_VARIABLES = {"flaskdeploy_secret", "flaskdeploy_wsgi"}


def reads(role):
    """(file:line, name) of every other role's or playbook variable named in the role's
    code; comments aside, attribute access (x.backup_file) aside."""
    others = [r for r in ROLES if r != role] + ["flaskdeploy"]
    name = re.compile(r"(?<![\w.])((?:%s)_[a-z0-9_]+)" % "|".join(others))
    found = []
    for part in ("defaults", "vars", "tasks", "handlers", "templates"):
        for path in sorted((REPO / "roles" / role / part).rglob("*")):
            if not path.is_file():
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = re.sub(r"\{#.*?#\}", "", line).split("#", 1)[0]
                for match in name.finditer(code):
                    if (role, match.group(1)) not in MENTIONS and match.group(1) not in NOT_VARIABLES:
                        found.append((f"{path.relative_to(REPO)}:{number}", match.group(1)))
    return found


def test_no_role_reads_another_roles_variables():
    found = {role: reads(role) for role in ROLES}
    assert {role: names for role, names in found.items() if names} == {}


def test_the_check_finds_a_read_of_another_roles_variable(tmp_path, monkeypatch):
    """The check itself: a role default naming the app role's app_name is found."""
    role = tmp_path / "roles" / "web" / "defaults"
    role.mkdir(parents=True)
    (tmp_path / "roles" / "web" / "tasks").mkdir()
    (tmp_path / "roles" / "app" / "tasks").mkdir(parents=True)
    (role / "main.yml").write_text("# app_name in a comment is fine\nweb_name: \"{{ app_name }}\"\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "ROLES", ["app", "web"])
    assert reads("web") == [("roles/web/defaults/main.yml:2", "app_name")]


def entry_points_imported():
    """(playbook:line, role, tasks_from) of every import_role/include_role with a literal
    tasks_from in the playbooks."""
    found = []
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        role = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"\s+name: ([a-z_]+)$", line)
            if match:
                role = match.group(1)
            match = re.match(r"\s+tasks_from: (.+)$", line)
            if match and role:
                # A literal name, or each quoted name of a template choosing one.
                value = match.group(1)
                names = re.findall(r"'([A-Za-z0-9_.-]+)'", value) if "{{" in value else [value]
                found += [(f"{path.relative_to(REPO)}:{number}", role, name) for name in names]
    return found


def test_every_entry_point_a_playbook_imports_has_a_spec_that_is_checked():
    """Every entry point a playbook imports (tasks_from) has its spec in the role's
    meta/argument_specs.yml, named as the playbook names it: Ansible checks a spec only
    when tasks_from names it exactly (`activate`, not `activate.yml`), so a spec a
    playbook reaches by the file name is silently never checked, and an entry point
    without one takes any value."""
    import yaml

    imported = entry_points_imported()
    assert len(imported) > 20  # (the scan finds the playbooks' imports)
    assert ("postgresql", "client") in {(role, name) for _, role, name in imported}  # (and templated ones)
    unchecked = []
    for where, role, tasks_from in imported:
        specs = yaml.safe_load((REPO / "roles" / role / "meta/argument_specs.yml").read_text())["argument_specs"]
        if tasks_from not in specs:
            unchecked.append((where, role, tasks_from))
    assert unchecked == []
    reached = {(role, tasks_from) for _, role, tasks_from in imported}
    for role in ROLES:
        specs = yaml.safe_load((REPO / "roles" / role / "meta/argument_specs.yml").read_text())["argument_specs"]
        for entry in specs:
            assert entry == "main" or (role, entry) in reached, f"{role}'s spec {entry}: no playbook imports it by that name"
