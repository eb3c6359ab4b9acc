"""playbooks/vars/flaskdeploy.json, what the plays read, is flaskdeploy.yml as JSON
(molecule/scripts/wiring-json.py writes it): the same values, in the same order, and
every play that reads the wiring names the JSON."""

import importlib.util
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("wiring_json", REPO / "molecule/scripts/wiring-json.py")
wiring_json = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wiring_json)


def test_the_json_is_what_the_yaml_makes():
    assert (REPO / "playbooks/vars/flaskdeploy.json").read_text(encoding="utf-8") == wiring_json.rendered(), \
        "run molecule/scripts/wiring-json.py after changing playbooks/vars/flaskdeploy.yml"
    source = yaml.safe_load((REPO / "playbooks/vars/flaskdeploy.yml").read_text(encoding="utf-8"))
    read = json.loads((REPO / "playbooks/vars/flaskdeploy.json").read_text(encoding="utf-8"))
    assert read == source and list(read) == list(source)


def test_the_check_fails_when_the_json_differs(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "flaskdeploy.json"
    stale.write_text(wiring_json.rendered().replace("flaskdeploy_topology", "flaskdeploy_topologie", 1))
    monkeypatch.setattr(wiring_json, "TARGET", stale)
    assert wiring_json.main(["--check"]) == 1
    assert "is not what flaskdeploy.yml makes" in capsys.readouterr().err
    assert wiring_json.main([]) == 0 and wiring_json.main(["--check"]) == 0


def test_every_play_reads_the_json_not_the_yaml():
    plays = sorted(REPO.glob("playbooks/*.yml")) + [REPO / "molecule/apps/redis.yml"]
    named = {}
    for path in plays:
        for play in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            for entry in play.get("vars_files", []):
                named.setdefault(Path(entry).name, []).append(f"{path.name}: {play.get('name')}")
    assert "flaskdeploy.yml" not in named, named["flaskdeploy.yml"]
    assert len(named.get("flaskdeploy.json", [])) == 14, named
    text = "\n".join(p.read_text(encoding="utf-8") for p in plays)
    assert not re.search(r"vars/flaskdeploy\.yml", text)
