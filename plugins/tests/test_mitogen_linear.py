"""plugins/strategy/mitogen_linear.py (ANSIBLE_STRATEGY=mitogen_linear): mitogen when
installed, plain linear otherwise, and plain linear for plays on the controller
(connection: local).

Each test runs ansible-playbook on this machine (local connection only). Whether
mitogen ran the tasks shows in their parent process: mitogen keeps one Python per host
for the whole run, so two shell tasks share a parent; the linear strategy starts a new
Python per task.
"""

import importlib.util
import marshal
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
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_STRATEGY="mitogen_linear",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
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
    # The modules mitogen compiled to find their imports (shell's action runs the
    # command module; module_utils/basic.py and those it imports), kept for the next run.
    cache = tmp_path / "cache" / "flaskdeploy" / "mitogen-code"
    assert len(list(cache.iterdir())) >= 5
    assert cache.stat().st_mode & 0o777 == 0o700
    entries = {entry.name: entry.stat().st_mtime_ns for entry in cache.iterdir()}
    again = run(tmp_path, """
        - name: The same run again, from the cache
          hosts: localhost
          gather_facts: false
          vars:
            ansible_connection: local
          tasks:
        """)
    first, second = parents(again)
    assert first == second
    # Read, not written again: the same entries, untouched.
    assert {entry.name: entry.stat().st_mtime_ns for entry in cache.iterdir()} == entries


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


def strategy_module():
    spec = importlib.util.spec_from_file_location(
        "flaskdeploy_mitogen_linear", REPO / "plugins/strategy/mitogen_linear.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = b"import os\nfrom json import dumps\nVALUE = dumps({'a': 1})\n"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    import ansible_mitogen.module_finder
    import jinja2.environment
    import mitogen.master
    from ansible.executor.process.worker import WorkerProcess
    # (loading the plugin patches mitogen's, Jinja's and Ansible's modules in this
    # process: undone afterwards)
    monkeypatch.setattr(ansible_mitogen.module_finder, "compile", compile, raising=False)
    monkeypatch.setattr(mitogen.master, "compile", compile, raising=False)
    monkeypatch.setattr(jinja2.environment, "compile", compile, raising=False)
    monkeypatch.setattr(WorkerProcess, "start", WorkerProcess.start)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return strategy_module()


def cache_files(tmp_path):
    directory = tmp_path / "flaskdeploy" / "mitogen-code"
    return sorted(directory.iterdir()) if directory.exists() else []


def run_code(code):
    namespace = {}
    exec(code, namespace)  # noqa: S102  (the test's own source)
    return namespace["VALUE"]


def test_compiled_code_is_kept_and_read_back_without_compiling(plugin, tmp_path, monkeypatch):
    first = plugin.cached_compile(SOURCE, "some.module", "exec")
    assert first.co_filename == "some.module" and run_code(first) == '{"a": 1}'
    [entry] = cache_files(tmp_path)

    def no_compile(*args):
        raise AssertionError("compiled again: the cache was not read")
    # (a global of the plugin's module comes before the builtin)
    monkeypatch.setattr(plugin, "compile", no_compile, raising=False)
    again = plugin.cached_compile(SOURCE, "some.module", "exec")
    assert again.co_code == first.co_code and again.co_filename == "some.module"
    assert run_code(again) == '{"a": 1}'
    assert cache_files(tmp_path) == [entry]


def test_a_changed_source_or_name_is_a_new_entry_never_the_old_code(plugin, tmp_path):
    plugin.cached_compile(SOURCE, "some.module", "exec")
    changed = plugin.cached_compile(SOURCE.replace(b"'a': 1", b"'a': 2"), "some.module", "exec")
    assert run_code(changed) == '{"a": 2}'
    renamed = plugin.cached_compile(SOURCE, "other.module", "exec")
    assert renamed.co_filename == "other.module"
    assert len(cache_files(tmp_path)) == 3


def test_a_damaged_entry_is_compiled_again(plugin, tmp_path):
    plugin.cached_compile(SOURCE, "some.module", "exec")
    [entry] = cache_files(tmp_path)
    for damage in (b"", b"\x00garbage", marshal.dumps("not code")):
        entry.write_bytes(damage)
        code = plugin.cached_compile(SOURCE, "some.module", "exec")
        assert run_code(code) == '{"a": 1}'
        assert marshal.loads(entry.read_bytes()).co_code == code.co_code


def test_a_cache_others_may_write_to_is_neither_read_nor_written(plugin, tmp_path):
    directory = tmp_path / "flaskdeploy" / "mitogen-code"
    directory.mkdir(parents=True)
    planted = compile("VALUE = 'planted'", "some.module", "exec")
    plugin.cached_compile(SOURCE, "some.module", "exec")
    [entry] = cache_files(tmp_path)
    entry.write_bytes(marshal.dumps(planted))
    directory.chmod(0o777)
    assert run_code(plugin.cached_compile(SOURCE, "some.module", "exec")) == '{"a": 1}'
    entry.unlink()
    plugin.cached_compile(SOURCE, "some.module", "exec")
    assert cache_files(tmp_path) == []


def test_a_link_in_place_of_the_cache_directory_is_not_followed(plugin, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "flaskdeploy").mkdir()
    (tmp_path / "flaskdeploy" / "mitogen-code").symlink_to(elsewhere)
    assert run_code(plugin.cached_compile(SOURCE, "some.module", "exec")) == '{"a": 1}'
    assert list(elsewhere.iterdir()) == []


def test_calls_other_than_mitogens_are_compiles_own(plugin, tmp_path):
    import ast
    tree = ast.parse(SOURCE)
    assert run_code(plugin.cached_compile(tree, "some.module", "exec")) == '{"a": 1}'
    assert plugin.cached_compile("1 + 1", "<expr>", "eval", dont_inherit=True) is not None
    assert cache_files(tmp_path) == []


def test_mitogen_compiles_through_the_cache(plugin):
    import ansible_mitogen.module_finder
    import mitogen.master
    assert ansible_mitogen.module_finder.compile is plugin.cached_compile
    assert mitogen.master.compile is plugin.cached_compile


def test_jinja_compiles_templates_through_the_cache(plugin, tmp_path, monkeypatch):
    import jinja2
    import jinja2.environment
    assert jinja2.environment.compile is plugin.cached_compile
    template = "{% for n in numbers %}{{ n * factor }},{% endfor %}"
    assert jinja2.Environment().from_string(template).render(numbers=[1, 2], factor=3) == "3,6,"
    entries = cache_files(tmp_path)
    assert len(entries) == 1

    def no_compile(*args):
        raise AssertionError("compiled again: the cache was not read")
    monkeypatch.setattr(plugin, "compile", no_compile, raising=False)
    # A new environment (as each task's worker has): the same code, read back.
    assert jinja2.Environment().from_string(template).render(numbers=[4], factor=2) == "8,"
    # Another template is other Python: compiled (here: refused), never the first's code.
    with pytest.raises(AssertionError, match="compiled again"):
        jinja2.Environment().from_string("{{ factor }}").render(factor=1)
    assert cache_files(tmp_path) == entries


def test_a_worker_forks_with_the_collectors_objects_frozen(plugin):
    """The objects are frozen while the worker process is forked, and given back to
    the controller's collector afterwards, also when the start fails."""
    import gc
    seen = []

    def start(worker):
        seen.append((worker, gc.get_freeze_count()))
        if worker == "failing":
            raise OSError("fork failed")
    assert gc.get_freeze_count() == 0
    wrapped = plugin.frozen_start(start)
    wrapped("worker")
    with pytest.raises(OSError):
        wrapped("failing")
    assert seen[0][0] == "worker" and seen[0][1] > 1000 and seen[1][1] > 1000
    assert gc.get_freeze_count() == 0


def test_ansible_starts_its_workers_frozen(plugin):
    from ansible.executor.process.worker import WorkerProcess
    assert WorkerProcess.start.__qualname__ == "frozen_start.<locals>.start_frozen"
