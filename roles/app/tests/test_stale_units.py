"""files/flaskdeploy-stale-units: `record` writes what a unit starts with (the
environment digest, the release `current` names) where root keeps it; `check`
prints each running unit started with another digest, or (--release) on another
release, or without a record. systemctl is a stand-in naming each unit's main PID
(0: not running)."""

import os
import subprocess
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "files" / "flaskdeploy-stale-units"


def run(tmp_path, *args):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text('#!/bin/sh\neval "u=\\${$#}"\ncase $u in\n  *stopped*) echo 0 ;;\n'
                                       '  *) echo 4242 ;;\nesac\n')
    (bin_dir / "systemctl").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FLASKDEPLOY_UNIT_RECORDS=str(tmp_path / "records"))
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=30, env=env)


def test_units_started_with_another_environment_or_release_or_no_record(tmp_path):
    for release in ("a", "b"):
        (tmp_path / "releases" / release).mkdir(parents=True)
    current, digest = tmp_path / "current", tmp_path / "env.digest"
    current.symlink_to(tmp_path / "releases" / "a")
    digest.write_text("FLASKDEPLOY_ENV_DIGEST=old\n")
    for unit in ("shop.service", "shop-worker@1.service", "shop-worker@2.service", "shop-stopped@1.service"):
        assert run(tmp_path, "record", str(digest), str(current), unit).returncode == 0
    record = tmp_path / "records" / "shop.service"
    assert record.read_text() == f"digest=old\nrelease={tmp_path / 'releases' / 'a'}\n"
    assert oct((tmp_path / "records").stat().st_mode & 0o777) == "0o700"
    units = ["shop.service", "shop-worker@1.service", "shop-worker@2.service", "shop-stopped@1.service",
             "shop-worker@3.service"]
    # Nothing changed: only the running unit without a record.
    assert run(tmp_path, "check", "--release", str(digest), str(current), *units).stdout.split() == [
        "shop-worker@3.service"]
    # A switch: with --release (the processes' check) those started before it (@2
    # started again since); without (the WSGI server's: it reloads), none.
    current.unlink()
    current.symlink_to(tmp_path / "releases" / "b")
    assert run(tmp_path, "record", str(digest), str(current), "shop-worker@2.service").returncode == 0
    assert run(tmp_path, "check", "--release", str(digest), str(current), *units[1:3]).stdout.split() == [
        "shop-worker@1.service"]
    assert run(tmp_path, "check", str(digest), str(current), "shop.service").stdout == ""
    # A new environment: every running unit started before it.
    digest.write_text("FLASKDEPLOY_ENV_DIGEST=new\n")
    assert run(tmp_path, "check", str(digest), str(current), *units[:4]).stdout.split() == units[:3]


def test_a_unit_name_with_a_slash_is_refused(tmp_path):
    result = run(tmp_path, "record", str(tmp_path / "d"), str(tmp_path / "c"), "../../etc/passwd")
    assert result.returncode == 2
    assert not (tmp_path / "etc").exists()
