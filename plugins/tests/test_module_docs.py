"""Each module's documentation is what ansible-doc reads (a YAML slip in DOCUMENTATION
leaves the module without its page and ansible-lint only warns)."""

import subprocess
import sys
from pathlib import Path

import pytest

MODULES = Path(__file__).resolve().parents[1] / "modules"


@pytest.mark.parametrize("name", sorted(p.stem for p in MODULES.glob("*.py")))
def test_ansible_doc_reads_the_module(name):
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-M", str(MODULES), "--json", name],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and f'"{name}"' in result.stdout, result.stderr[-2000:]
