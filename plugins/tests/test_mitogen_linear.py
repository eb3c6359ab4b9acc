"""plugins/strategy/mitogen_linear.py (ANSIBLE_STRATEGY=mitogen_linear): mitogen when
installed, plain linear otherwise, and plain linear for plays on the controller
(connection: local).

Each test runs ansible-playbook on this machine (local connection only). Whether
mitogen ran the tasks shows in their parent process: mitogen keeps one Python per host
for the whole run, so two shell tasks share a parent; the linear strategy starts a new
Python per task.
"""

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TWO_SHELLS = """
    - name: First shell
      ansible.builtin.shell: echo $PPID
      register: first
      changed_when: false
    - name: Second shell
      ansible.builtin.shell: echo $PPID
      register: second
      changed_when: false
    - name: Show both parents
      ansible.builtin.debug:
        msg: "parents {{ first.stdout }} {{ second.stdout }}"
"""


def run(tmp_path, play_header, tasks=TWO_SHELLS, hide_mitogen=False):
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(play_header) + textwrap.indent(textwrap.dedent(tasks), "  "))
    # The strategy as the README's opt-in selects it.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_STRATEGY="mitogen_linear")
    if hide_mitogen:
        blocked = tmp_path / "blocked" / "ansible_mitogen"
        blocked.mkdir(parents=True)
        (blocked / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocked.parent), env.get("PYTHONPATH")]))
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def parents(output):
    line = next(line for line in output.splitlines() if "parents " in line)
    first, second = line.split("parents ")[1].strip().strip("'\"").split()
    return first, second


@pytest.fixture(autouse=True)
def _mitogen_installed():
    pytest.importorskip("ansible_mitogen", reason="requirements-dev.txt installs mitogen")


def test_mitogen_runs_the_tasks_of_a_host(tmp_path):
    output = run(tmp_path, """
        - name: A host reached by its connection (here local), as a server by ssh
          hosts: localhost
          gather_facts: false
          vars:
            ansible_connection: local
          tasks:
        """)
    first, second = parents(output)
    assert first == second, "mitogen keeps one interpreter per host"
    assert "mitogen is not installed" not in output


def test_a_play_on_the_controller_runs_the_plain_linear_strategy(tmp_path):
    output = run(tmp_path, """
        - name: A play on the controller, as molecule's create and destroy
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
        """)
    first, second = parents(output)
    assert first != second, "a new Python per task: the plain linear strategy"


def test_async_jobs_finish_in_a_play_on_the_controller(tmp_path):
    # What molecule's destroy playbook does; under mitogen the job never finished.
    output = run(tmp_path, """
        - name: Async on the controller
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
        """, tasks=f"""
    - name: Set the async directory as molecule does
      ansible.builtin.set_fact:
        ansible_async_dir: "{tmp_path}/async/"
    - name: Start a job
      ansible.builtin.command: sleep 1
      async: 60
      poll: 0
      register: job
      changed_when: false
    - name: Wait for it
      ansible.builtin.async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
      register: status
      until: status is finished
      retries: 10
      delay: 1
""")
    assert "ok=3" in output and "failed=0" in output


def test_without_mitogen_the_run_goes_on_with_a_warning(tmp_path):
    output = run(tmp_path, """
        - name: A host, mitogen hidden
          hosts: localhost
          gather_facts: false
          vars:
            ansible_connection: local
          tasks:
        """, hide_mitogen=True)
    assert "mitogen is not installed (pip install mitogen)" in output
    first, second = parents(output)
    assert first != second, "the plain linear strategy"


def test_ansible_cfg_runs_the_plain_linear_strategy_and_warns_of_nothing(tmp_path):
    """The default, what a user's run gets: no mitogen, no deprecation warning."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent("""
        - name: A host, with ansible.cfg's strategy
          hosts: localhost
          gather_facts: false
          vars:
            ansible_connection: local
          tasks:
        """) + textwrap.indent(textwrap.dedent(TWO_SHELLS), "  "))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    env.pop("ANSIBLE_STRATEGY", None)
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = parents(result.stdout)
    assert first != second, "a new Python per task: the plain linear strategy"
    assert "DEPRECATION" not in result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
