"""site.yml's tags, one per concern (docs/variables.md, "Tags"): every step of its
plays is tagged, the checks and the facts every step needs with `always`, each role
with its concern's tag (the roles an app's deploy needs together also with `app`),
and an include hands its tags to the tasks it includes (`apply`: otherwise they
would have none, and a run with --tags would include the file and skip its tasks).
Ansible's own listing of a run with --tags shows what runs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "site.yml"
# Each role's tag: its name, but service_tls's.
TAG = {"service_tls": "tls"}
# The roles whose steps on an app server run with --tags app too: a deploy is the
# release (app), the server onto it (wsgi), the processes onto it, and the URLs of
# the data services and Python it needs. (nginx is apart: it takes the app's facts,
# which every run works out.)
APP = {"app", "wsgi", "processes", "postgresql", "redis", "python"}


def steps():
    """(play name, section, task) of every step of site.yml's plays."""
    for play in yaml.safe_load(PLAYBOOK.read_text()):
        for section in ("pre_tasks", "tasks", "post_tasks"):
            for task in play.get(section) or []:
                yield play.get("name", ""), section, task


# The learn play's notes of what a run lets run of a deploy, and the app servers'
# steps they stand for.
NOTES = {"Note that this run deploys the app": "Deploy the application",
         "Note that this run runs the WSGI server": "Run the WSGI server",
         "Note that this run runs the processes": "Run the processes besides web and the scheduled jobs",
         "Note that this run gives the app its PostgreSQL URL": "Run PostgreSQL for the app",
         "Note that this run gives the app its Redis URL": "Run Redis for the app"}


def site_task(name, play="Provision the Flask application servers"):
    return next(task for p, section, task in steps() if task["name"] == name and (p == play or name in NOTES))


def module(task):
    return next(key for key in task if key.startswith("ansible.builtin."))


def test_each_note_is_tagged_as_the_step_it_stands_for():
    notes = [task for play, section, task in steps() if task["name"] in NOTES]
    assert len(notes) == len(NOTES)
    assert [(n["name"], sorted(n["tags"])) for n in notes] == [
        (n["name"], sorted(site_task(NOTES[n["name"]])["tags"])) for n in notes]


def test_every_step_is_tagged_and_includes_hand_their_tags_on():
    untagged, not_handed = [], []
    for play, section, task in steps():
        if "tags" not in task:
            untagged.append((play, task["name"]))
        elif module(task).split(".")[-1] in ("include_role", "include_tasks"):
            if (task[module(task)].get("apply") or {}).get("tags") != task["tags"]:
                not_handed.append((play, task["name"]))
    # The one untagged step: the app runs with its environment only after a whole run.
    assert untagged == [("Provision the Flask application servers", "Record that the app runs with its environment")]
    assert not_handed == []


def expected_tags(play, section, task):
    """The tags a step of site.yml must have."""
    body = task[module(task)]
    role = body.get("name") if module(task).endswith("_role") else None
    entry = body.get("tasks_from", "main") if role else None
    if task["name"] in NOTES:
        return set(site_task(NOTES[task["name"]])["tags"])  # as the step it stands for
    if section == "pre_tasks" or module(task).endswith((".meta", ".setup", ".assert")) or entry in ("assert", "unlock", "facts"):
        return {"always"}
    if role is None:
        return None  # the one untagged step (above)
    tags = {TAG.get(role, role)}
    if entry != "finish-rotation":
        if play == "Provision the Flask application servers" and role in APP | {"service_tls"}:
            tags.add("app")
        if role in ("postgresql", "redis"):
            tags.add("tls")  # they install the certificates service_tls keeps
        if role == "service_tls":
            tags |= {"postgresql", "redis"}  # its certificates are theirs
    return tags


def test_the_checks_run_always_and_each_role_under_its_concern():
    wrong = [(play, task["name"], task.get("tags"), sorted(expected))
             for play, section, task in steps()
             if (expected := expected_tags(play, section, task)) is not None and set(task["tags"]) != expected]
    assert wrong == []


INVENTORY = """
all:
  vars: {app_name: hello}
  children:
    appservers: {hosts: {web1: {ansible_host: 127.0.0.1}}}
    loadbalancers: {hosts: {lb1: {ansible_host: 127.0.0.2}}}
    databases: {hosts: {db1: {ansible_host: 127.0.0.3}}}
"""


@pytest.fixture(scope="module")
def listing(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    inventory.write_text(INVENTORY)

    def tasks(*options):
        options = options if len(options) > 1 else ("--tags", *options)
        out = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "site.yml",
                              "--list-tasks", *options], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [line.strip().split("\t")[0] for line in out.splitlines() if line.startswith("      ")]
    return tasks


# The app's facts every run works out (nginx takes them).
FACTS = ["app : Read where the host's Python installs packages (a run without a release plan)",
         "app : Record where the static files are"]


def test_every_run_checks_every_roles_values(listing):
    """What a run with any tags runs (tagged always): the checks of every role's
    values, before any change."""
    always = listing("always")
    assert "Check the variables of the roles before changing anything" in always
    for check in ("baseline : Check the baseline's values", "app : Check the application's values",
                  "wsgi : Check the WSGI server's values", "processes : Check the processes and scheduled jobs",
                  "nginx : Check the nginx values"):
        assert check in always, always


def test_a_run_with_tags_baseline_runs_the_checks_and_the_baseline_only(listing):
    listed = listing("baseline")
    always = set(listing("always"))
    assert always <= set(listed)
    roles = {name.split(" : ")[0] for name in listed
             if " : " in name and "Validating arguments" not in name and name not in always
             and name not in FACTS + ["app : Give back the deploy lock"]}
    assert roles == {"baseline"}, listed
    assert "Put the server in flaskdeploy_ready (or, in check mode, flaskdeploy_unready)" in listed


def test_a_run_with_tags_nginx_works_out_the_apps_facts_and_runs_no_deploy(listing):
    listed = listing("nginx")
    always = set(listing("always"))
    assert set(FACTS) <= set(listed) and always <= set(listed)
    assert "Put nginx in front" in listed
    assert "nginx : Write the site" in listed  # the balancers' play imports the role
    # Beyond the checks every run makes (tagged always), nothing of a deploy.
    assert not [name for name in listed if name.startswith(("app : ", "wsgi : ", "processes : ", "backup : "))
                and "Validating arguments" not in name and name not in always
                and name not in FACTS + ["app : Give back the deploy lock"]], listed


@pytest.mark.parametrize("options, deploys, applied", [
    ([], True, True), (["--tags", "nginx"], False, False), (["--tags", "app"], True, False),
    (["--skip-tags", "baseline"], True, False), (["--skip-tags", "wsgi"], None, False),
    (["--skip-tags", "postgresql"], None, False), (["--skip-tags", "tls"], None, False),
    (["--skip-tags", "app,wsgi"], False, False), (["--tags", "app", "--skip-tags", "redis"], None, False),
    (["--tags", "tagged", "--skip-tags", "processes"], None, False), (["--skip-tags", "app"], False, False)])
def test_what_a_run_with_tags_may_do(tmp_path, options, deploys, applied):
    """site.yml's own notes, guard and condition, run by Ansible with the run's options
    (an app server with PostgreSQL and Redis): a run that deploys and leaves out what
    a deploy needs stops (deploys None); a rotation finishes only after a whole run
    (applied)."""
    learn = [task for play, section, task in steps()
             if task["name"] in NOTES or task["name"] == "Check a run that deploys leaves out nothing a deploy needs"]
    record = site_task("Record that the app runs with its environment")
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"flaskdeploy_is_appserver": True, "postgresql_enabled": True, "redis_enabled": True},
             "tasks": learn + [
                 {"name": "applied", "ansible.builtin.debug": {"msg": "applied"}, "when": record["when"], "tags": ["always"]},
                 {"name": "deploys", "ansible.builtin.debug": {"msg": "deploys"}, "tags": ["app"]}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i", "localhost,",
                          "play.yml", *options], cwd=tmp_path, capture_output=True, text=True)
    if deploys is None:
        assert run.returncode != 0 and "which a deploy needs" in run.stdout, run.stdout[-2000:]
        return
    assert run.returncode == 0, run.stdout[-2000:]
    assert ('"msg": "applied"' in run.stdout) == applied, run.stdout[-2000:]
    assert ('"msg": "deploys"' in run.stdout) == deploys, run.stdout[-2000:]


def test_a_run_that_skips_the_app_still_works_out_its_facts(listing):
    listed = listing("--skip-tags", "app")
    assert set(FACTS) <= set(listed)
    assert "Put nginx in front" in listed
