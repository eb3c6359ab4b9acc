"""files/flaskdeploy-stale-units with real processes (their environment read from
/proc) and a stand-in systemctl naming each unit's main PID: a process started with
another environment digest, or on a release that is not `current`, is printed; one
started with both as they are, one without either variable (started before the
check existed) and a unit not running are not."""

import os
import subprocess
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "files" / "flaskdeploy-stale-units"


def test_the_units_started_with_another_environment_or_release(tmp_path):
    for release in ("a", "b"):
        (tmp_path / "releases" / release).mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "b")
    (tmp_path / "env.digest").write_text("FLASKDEPLOY_ENV_DIGEST=new\n")
    now, old = str(tmp_path / "releases" / "b"), str(tmp_path / "releases" / "a")
    started = {
        "shop-worker@1.service": {"FLASKDEPLOY_RELEASE": old, "FLASKDEPLOY_ENV_DIGEST": "new"},
        "shop-worker@2.service": {"FLASKDEPLOY_RELEASE": now, "FLASKDEPLOY_ENV_DIGEST": "new"},
        "shop-worker@3.service": {"FLASKDEPLOY_RELEASE": now, "FLASKDEPLOY_ENV_DIGEST": "old"},
        "shop.service": {"FLASKDEPLOY_ENV_DIGEST": "old"},
        "shop@8001.service": {"FLASKDEPLOY_ENV_DIGEST": "new"},
        "shop-clock@1.service": {},
    }
    procs = {unit: subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})
             for unit, env in started.items()}
    try:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        cases = "\n".join(f"  *{unit}) echo {proc.pid} ;;" for unit, proc in procs.items())
        (bin_dir / "systemctl").write_text(f'#!/bin/sh\neval "u=\\${{$#}}"\ncase $u in\n{cases}\n  *) echo 0 ;;\nesac\n')
        (bin_dir / "systemctl").chmod(0o755)
        result = subprocess.run([str(TOOL), str(tmp_path / "env.digest"), str(tmp_path / "current"),
                                 *started, "shop-beat@1.service"],
                                capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"))
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["shop-worker@1.service", "shop-worker@3.service", "shop.service"]
