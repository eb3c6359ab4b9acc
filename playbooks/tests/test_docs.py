"""Each role's variables are documented once, and what repeats them is checked: the
defaults in meta/argument_specs.yml equal defaults/main.yml's, every default is an
option of the role's spec, and each role's README.md is what aar-doc writes from the
spec now (molecule/scripts/role-docs.sh)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def spec_options(role):
    """Every option of every entry point of the role's spec, by name."""
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})
    return options


def defaults(role):
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def test_every_role_has_a_spec():
    assert ROLES == sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_are_the_defaults_files(role):
    """A default written in both places has one value; a variable of defaults/main.yml
    is an option of the spec, with its default there unless it is a template (which
    the spec cannot evaluate) or null."""
    options, values = spec_options(role), defaults(role)
    assert sorted(set(values) - set(options)) == [], "in defaults/main.yml, not in the spec"
    differ = {name: (values.get(name, "<missing>"), option["default"])
              for name, option in options.items() if "default" in option and values.get(name, "<missing>") != option["default"]}
    assert differ == {}, "defaults/main.yml and the spec disagree: (defaults, spec)"
    undocumented = sorted(name for name, value in values.items()
                          if "default" not in options[name] and value is not None
                          and "{{" not in yaml.safe_dump(value))
    assert undocumented == [], "a literal default in defaults/main.yml the spec does not give"


def aar_doc():
    found = shutil.which("aar-doc") or str(Path(sys.executable).parent / "aar-doc")
    if not os.access(found, os.X_OK):
        pytest.fail("aar-doc is not installed (requirements-dev.txt pins it)")
    return found


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_is_generated_from_the_spec(role, tmp_path):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.exists(), "run molecule/scripts/role-docs.sh"
    copy = tmp_path / role
    shutil.copytree(ROOT / "roles" / role, copy, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    subprocess.run([aar_doc(), "--output-template", str(ROOT / "molecule/scripts/role-readme.j2"), str(copy),
                    "markdown"], check=True, capture_output=True, text=True)
    assert readme.read_text() == (copy / "README.md").read_text(), \
        f"roles/{role}/README.md is not what its spec gives: run molecule/scripts/role-docs.sh"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "roles").glob("*/README.md"))]


def test_the_readme_fits_a_few_screens():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_the_docs_lead_somewhere(doc):
    """Every relative link of the README, docs/ and the role READMEs names a file of the
    repository, and a #fragment a heading of it (GitHub's anchors)."""
    import re

    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif fragment and file.suffix == ".md":
            anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                       for h in re.findall(r"^#+ (.*)$", file.read_text(), re.M)}
            if fragment not in anchors:
                broken.append(target)
    assert broken == []


@pytest.mark.parametrize("role", ROLES)
def test_the_role_readme_example_is_yaml(role):
    readme = (ROOT / "roles" / role / "README.md").read_text()
    example = readme.split("## Example Playbook", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(example)[0]["tasks"][0]["ansible.builtin.import_role"] == {"name": role}


def test_every_doc_is_listed_in_the_docs_index():
    index = (ROOT / "docs" / "README.md").read_text()
    assert [p.name for p in sorted((ROOT / "docs").glob("*.md"))
            if p.name != "README.md" and f"]({p.name})" not in index] == []
