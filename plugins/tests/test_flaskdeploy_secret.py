"""plugins/modules/flaskdeploy_secret.py: a secret generated once into a root-only file,
never a cut one, never over another."""

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("flaskdeploy_secret", PLUGINS / "modules" / "flaskdeploy_secret.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def test_written_once_with_the_content_around_the_secret(tmp_path):
    path = tmp_path / "secret.env"
    assert module.ensure_secret(str(path), "SECRET_KEY={secret}\n", 48) is True
    text = path.read_text()
    assert text.startswith("SECRET_KEY=") and text.endswith("\n") and text.count("\n") == 1
    assert len(text.strip().split("=", 1)[1]) == 64  # token_urlsafe(48): 64 characters
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert module.ensure_secret(str(path), "SECRET_KEY={secret}\n", 48) is False
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.env"]  # no temporary left


def test_what_a_killed_run_left_beside_it_is_replaced(tmp_path):
    (tmp_path / "pw.new").write_text("cut")
    (tmp_path / "pw.new").chmod(0o644)
    assert module.ensure_secret(str(tmp_path / "pw"), "{secret}\n", 32) is True
    assert len((tmp_path / "pw").read_text()) == 44 and stat.S_IMODE((tmp_path / "pw").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw"]


def test_two_secrets_differ(tmp_path):
    module.ensure_secret(str(tmp_path / "a"), "{secret}\n", 32)
    module.ensure_secret(str(tmp_path / "b"), "{secret}\n", 32)
    assert (tmp_path / "a").read_text() != (tmp_path / "b").read_text()


def test_an_existing_file_or_link_is_kept_and_not_followed(tmp_path):
    (tmp_path / "given").write_text("mine\n")
    assert module.ensure_secret(str(tmp_path / "given"), "{secret}\n", 32) is False
    assert (tmp_path / "given").read_text() == "mine\n"
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert module.ensure_secret(str(tmp_path / "link"), "{secret}\n", 32) is False
    assert not (tmp_path / "nowhere").exists()


def test_a_file_another_writer_made_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    real_link = os.link

    def racing_link(source, target):
        Path(target).write_text("theirs\n")
        return real_link(source, target)

    monkeypatch.setattr(module.os, "link", racing_link)
    assert module.ensure_secret(str(path), "{secret}\n", 32) is False
    assert path.read_text() == "theirs\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def run(tmp_path, *args):
    """The module as Ansible runs it (ad hoc, on localhost), its JSON result."""
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_LIBRARY": str(PLUGINS / "modules"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_CONFIG": str(config)}
    out = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
                          "-e", f"ansible_python_interpreter={sys.executable}", "-m", "flaskdeploy_secret",
                          *args], env=env, capture_output=True, text=True, cwd=tmp_path)
    return json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_through_ansible_check_mode_then_a_run_then_a_rerun(tmp_path):
    path = tmp_path / "pw"
    checked = run(tmp_path, "-a", f"path={path}", "--check")
    assert checked["changed"] is True and not path.exists()
    first = run(tmp_path, "-a", f"path={path}")
    assert first["changed"] is True and len(path.read_text()) == 44  # 43 characters and the newline
    assert path.read_text() not in json.dumps(first)
    assert run(tmp_path, "-a", f"path={path}")["changed"] is False
    assert run(tmp_path, "-a", f"path={path}", "--check")["changed"] is False


def test_check_mode_in_a_directory_the_run_would_make(tmp_path):
    checked = run(tmp_path, "-a", f"path={tmp_path}/not-yet/pw", "--check")
    assert checked["changed"] is True and "failed" not in checked and not (tmp_path / "not-yet").exists()
    assert "not a directory" in run(tmp_path, "-a", f"path={tmp_path}/not-yet/pw")["msg"]


def test_refused_without_the_placeholder_or_with_a_short_length(tmp_path):
    assert "{secret}" in run(tmp_path, "-a", f"path={tmp_path}/x content=plain")["msg"]
    assert "16 to 256" in run(tmp_path, "-a", f"path={tmp_path}/x length=8")["msg"]
    assert not (tmp_path / "x").exists()


def test_a_write_that_fails_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.os, "fsync", full)
    try:
        module.ensure_secret(str(tmp_path / "secret"), "{secret}\n", 32)
    except OSError as error:
        assert error.errno == 28
    else:
        raise AssertionError("no error")
    assert list(tmp_path.iterdir()) == []
