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
# Names with the prefix that are no variables: the project's modules, its actions
# (apt, systemd, stage, command) and its WSGI entry point's file.
NOT_VARIABLES = {"flaskdeploy_secret", "flaskdeploy_differs", "flaskdeploy_apt", "flaskdeploy_systemd",
                 "flaskdeploy_stage", "flaskdeploy_command", "flaskdeploy_wsgi"}


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


def unchecked_imports(plays):
    """(play, role, entry points, whether the play checks the role's variables first) of
    every import_role/include_role with rolespec_validate: false in the plays. A role
    counts as checked when it is in the play's check_roles and the play imports it
    statically somewhere (import_role): only then are its defaults, which the check
    evaluates, loaded before the play runs (an include_role loads them when it runs)."""
    found = []

    def imported(node):
        if isinstance(node, dict):
            spec = node.get("ansible.builtin.import_role")
            own = [spec["name"]] if isinstance(spec, dict) else []
            return own + [r for child in node.values() for r in imported(child)]
        if isinstance(node, list):
            return [r for child in node for r in imported(child)]
        return []

    def walk(node, play, checked):
        if isinstance(node, dict):
            for key in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
                spec = node.get(key)
                if isinstance(spec, dict) and spec.get("rolespec_validate") is False:
                    value = str(spec.get("tasks_from", "main"))
                    names = re.findall(r"'([A-Za-z0-9_.-]+)'", value) if "{{" in value else [value]
                    found.append((play, spec["name"], names, spec["name"] in checked))
            for child in node.values():
                walk(child, play, checked)
        elif isinstance(node, list):
            for child in node:
                walk(child, play, checked)

    def check_roles(node):
        if isinstance(node, dict):
            roles = (node.get("vars") or {}).get("check_roles", []) if isinstance(node.get("vars"), dict) else []
            return list(roles) + [r for child in node.values() for r in check_roles(child)]
        if isinstance(node, list):
            return [r for child in node for r in check_roles(child)]
        return []

    for play in plays:
        walk(play, play.get("name", "?"), set(check_roles(play)) & set(imported(play)))
    return found


def test_a_role_skips_its_spec_only_where_the_play_checked_it_first():
    """A play checks its roles' variables before any change (tasks/check-role-variables.yml,
    each role's `main` spec); an import there may skip the role's own check of the same
    values (rolespec_validate: false, a task less per role and run) only if the role is
    among those checked, imported statically in the play (its defaults loaded for the
    check), and the entry point takes nothing but `main`'s options, as `main` defines
    them."""
    import yaml

    skipped = []
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play, role, names, checked in unchecked_imports(yaml.safe_load(path.read_text())):
            specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
            main = specs["argument_specs"]["main"]["options"]
            for name in names:
                options = specs["argument_specs"][name.removesuffix(".yml")].get("options") or {}
                skipped.append((path.name, play, role, name, checked,
                                sorted(k for k, v in options.items() if main.get(k) != v)))
    assert skipped, "no import skips its role's check (the test reads nothing)"
    assert [s for s in skipped if not s[4] or s[5]] == []


def test_the_check_finds_an_import_skipping_a_spec_nothing_checked():
    plays = [{"name": "p", "tasks": [
        {"ansible.builtin.include_tasks": "tasks/check-role-variables.yml", "vars": {"check_roles": ["app"]}},
        {"ansible.builtin.import_role": {"name": "app", "rolespec_validate": False}},
        {"ansible.builtin.import_role": {"name": "wsgi", "rolespec_validate": False, "tasks_from": "activate"}},
        {"ansible.builtin.include_role": {"name": "redis", "rolespec_validate": False}},
        {"ansible.builtin.include_tasks": "tasks/check-role-variables.yml", "vars": {"check_roles": ["redis"]}},
        {"ansible.builtin.import_role": {"name": "nginx"}}]}]
    assert unchecked_imports(plays) == [("p", "app", ["main"], True), ("p", "wsgi", ["activate"], False),
                                        ("p", "redis", ["main"], False)]
