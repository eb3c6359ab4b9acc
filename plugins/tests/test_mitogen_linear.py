"""plugins/strategy/mitogen_linear.py (ANSIBLE_STRATEGY=mitogen_linear): mitogen when
installed, plain linear otherwise, and plain linear for plays on the controller
(connection: local).

Each test runs ansible-playbook on this machine (local connection only). Whether
mitogen ran the tasks shows in their parent process: mitogen keeps one Python per host
for the whole run, so two shell tasks share a parent; the linear strategy starts a new
Python per task.
"""

import hashlib
import importlib.util
import marshal
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

try:  # (mitogen's own, before a test loads the plugin, which patches it)
    from mitogen.minify import minimize_source as MINIMIZE_SOURCE
except ImportError:
    MINIMIZE_SOURCE = None

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


def hidden_mitogen(env, tmp_path):
    """env, with an ansible_mitogen package first on the path that fails to import."""
    blocked = tmp_path / "blocked" / "ansible_mitogen"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocked.parent), env.get("PYTHONPATH")]))
    return env


def run(tmp_path, play_header, tasks=TWO_SHELLS, hide_mitogen=False):
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(play_header) + textwrap.indent(textwrap.dedent(tasks), "  "))
    # The strategy as the README's opt-in selects it.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_STRATEGY="mitogen_linear",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    if hide_mitogen:
        hidden_mitogen(env, tmp_path)
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def decompresses(data):
    try:
        zlib.decompress(data)
    except zlib.error:
        return False
    return True


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
    # Among them the payloads mitogen sent: modules minified (kept behind their
    # SHA-256) and compressed.
    kept = [entry.read_bytes() for entry in cache.iterdir()]
    assert [data for data in kept if hashlib.sha256(data[32:]).digest() == data[:32]]
    assert [data for data in kept if decompresses(data)]


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


@pytest.mark.parametrize("mitogen", ["installed", "hidden"])
def test_ansible_cfg_runs_the_plain_linear_strategy_with_the_caches_and_warns_of_nothing(tmp_path, mitogen):
    """The default, what a user's run gets: Ansible's linear strategy (no mitogen,
    no deprecation warning), with the template code cache (the flaskdeploy_caches
    callback); also where mitogen is not installed (the callback does not need it)."""
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
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("ANSIBLE_STRATEGY", None)
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    if mitogen == "hidden":
        hidden_mitogen(env, tmp_path)
    result = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = parents(result.stdout)
    assert first != second, "a new Python per task: the plain linear strategy"
    assert "DEPRECATION" not in result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    # The code of the tasks' templates, kept for the next run.
    assert cache_files(tmp_path / "cache")


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
    import mitogen.master
    from ansible.executor.process.worker import WorkerProcess
    # (loading the plugin patches mitogen's and Ansible's modules in this process:
    # undone afterwards)
    monkeypatch.setattr(ansible_mitogen.module_finder, "compile", compile, raising=False)
    monkeypatch.setattr(mitogen.master, "compile", compile, raising=False)
    import mitogen.minify
    monkeypatch.setattr(mitogen.minify, "minimize_source", mitogen.minify.minimize_source)
    monkeypatch.setattr(mitogen.master, "zlib", mitogen.master.zlib)
    from ansible._internal._templating._jinja_bits import AnsibleEnvironment
    monkeypatch.setattr(WorkerProcess, "start", WorkerProcess.start)
    from ansible.plugins.strategy import StrategyBase
    monkeypatch.setattr(StrategyBase, "_queue_task", StrategyBase._queue_task)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    saved = {name: vars(AnsibleEnvironment).get(name) for name in ("compile", "compile_expression")}
    yield strategy_module()
    for name, method in saved.items():
        if method is not None:
            setattr(AnsibleEnvironment, name, method)
        elif name in vars(AnsibleEnvironment):
            delattr(AnsibleEnvironment, name)


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


def test_a_modules_payload_is_kept_and_read_back_without_making_it_again(plugin, tmp_path):
    calls = []

    def minimize_source(source):
        calls.append("minimize")
        return MINIMIZE_SOURCE(source)

    def compress(data, level=-1):
        calls.append("compress")
        return zlib.compress(data, level)

    minimize, cached_compress = plugin.cached_payload(minimize_source, compress)
    source = SOURCE.decode() + '\n"""A docstring."""\n# a comment\n'
    minified = MINIMIZE_SOURCE(source)
    packed = zlib.compress(minified.encode(), 9)
    assert minimize(source) == minified and "# a comment" not in minified
    assert cached_compress(minified.encode(), 9) == packed
    assert calls == ["minimize", "compress"] and len(cache_files(tmp_path)) == 2
    # The next run: both read back, neither made again.
    assert minimize(source) == minified and cached_compress(minified.encode(), 9) == packed
    assert calls == ["minimize", "compress"]
    # Another source, another level: new entries, never the old result.
    assert minimize(source + "VALUE = 2\n") == minified + "VALUE = 2\n"
    assert zlib.decompress(cached_compress(minified.encode(), 1)) == minified.encode()
    assert len(cache_files(tmp_path)) == 4
    # A damaged entry is made again, whatever the damage.
    for entry in cache_files(tmp_path):
        entry.write_bytes(entry.read_bytes()[:-1] + b"x")
    calls.clear()
    assert minimize(source) == minified and cached_compress(minified.encode(), 9) == packed
    assert calls == ["minimize", "compress"]
    # Anything but mitogen's calls goes to the function itself.
    assert zlib.decompress(cached_compress(b"data", level=9)) == b"data"
    assert calls[-1] == "compress"


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


def environment_class(plugin, **filters):
    """A Jinja environment class with the template cache, named alike every time (so
    that each such class finds the others' entries) and its own in-process entries."""
    import jinja2

    class Environment(jinja2.Environment):
        def __init__(self, **settings):
            super().__init__(**settings)
            self.filters.update(filters)
            self.optimized = False  # (as Ansible's: no constants folded)
    return plugin.template_cache(Environment)


def test_templates_and_expressions_are_read_back_without_parsing(plugin, tmp_path, monkeypatch):
    import jinja2.environment
    template, expression = "{% for n in numbers %}{{ n * factor }},{% endfor %}", "numbers | sum > factor"
    first = environment_class(plugin)()
    assert first.from_string(template).render(numbers=[1, 2], factor=3) == "3,6,"
    assert first.compile_expression(expression)(numbers=[1, 2], factor=2) is True
    entries = cache_files(tmp_path)
    assert len(entries) == 2

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again: the cache was not read")
    monkeypatch.setattr(jinja2.Environment, "_parse", no_parsing)
    monkeypatch.setattr(jinja2.environment, "Parser", no_parsing)
    # A new environment, in a new process as far as the cache goes (as each task's
    # worker has): the same code, read back.
    again = environment_class(plugin)()
    assert again.from_string(template).render(numbers=[4], factor=2) == "8,"
    assert again.compile_expression(expression)(numbers=[1, 2], factor=3) is False
    # Another template is other code: made anew (here: refused), never the first's.
    with pytest.raises(AssertionError, match="parsed again"):
        again.from_string("{{ factor }}")
    with pytest.raises(AssertionError, match="parsed again"):
        again.compile_expression("factor")
    assert cache_files(tmp_path) == entries


def test_a_filter_passed_its_context_otherwise_now_gets_new_code(plugin, tmp_path):
    """Jinja's code calls a filter with or without the context as the filter asked
    when the code was made: a filter changed since (a collection upgraded) gets code
    made anew, never the entry's."""
    import jinja2

    def double(value):
        return value * 2

    @jinja2.pass_context
    def double_in_context(context, value):
        return value * context["factor"]

    assert environment_class(plugin, double=double)().from_string("{{ 3 | double }}").render() == "6"
    assert environment_class(plugin, double=double_in_context)().from_string(
        "{{ 3 | double }}").render(factor=5) == "15"
    assert environment_class(plugin, double=double_in_context)().compile_expression("3 | double")(factor=4) == 12
    assert environment_class(plugin, double=double)().compile_expression("3 | double")() == 6
    # A test, alike; and a filter gone: refused as without the cache.
    assert environment_class(plugin)().from_string("{{ 3 is odd }}").render() == "True"
    with pytest.raises(jinja2.TemplateAssertionError, match="No filter named 'double'"):
        environment_class(plugin)().from_string("{{ 3 | double }}")


def test_a_filter_loaded_later_in_the_same_process_gets_new_code(plugin, tmp_path):
    """A template compiled while its filter was missing (allowed inside an `if`), then
    with the filter loaded (as a role's filter_plugins are, at include_role): the
    process's own entry is checked as the cache's are."""
    import jinja2

    @jinja2.pass_context
    def scaled(context, value):
        return value * context["factor"]

    made = environment_class(plugin)
    template = "{% if on %}{{ 3 | scaled }}{% endif %}"
    assert made().from_string(template).render(on=False) == ""
    later = made()
    later.filters["scaled"] = scaled
    assert later.from_string(template).render(on=True, factor=5) == "15"


def test_an_environment_that_folds_constants_is_not_cached(plugin, tmp_path):
    import jinja2
    made = plugin.template_cache(type("Folding", (jinja2.Environment,), {}))
    assert made().from_string("{{ 3 * 2 }}").render() == "6"
    assert cache_files(tmp_path) == []


def test_other_delimiters_and_other_names_are_other_entries(plugin, tmp_path):
    made = environment_class(plugin)
    assert made().from_string("<< x >> {{ x }}").render(x=1) == "<< x >> 1"
    assert made(variable_start_string="<<", variable_end_string=">>").from_string(
        "<< x >> {{ x }}").render(x=1) == "1 {{ x }}"
    # (a template loaded by name, as the template module's are: its name is part of it)
    assert made().compile("{{ x }}", name="a.j2") is not made().compile("{{ x }}", name="b.j2")
    assert len(cache_files(tmp_path)) == 4
    assert made().from_string("<< x >> {{ x }}").render(x=2) == "<< x >> 2"
    assert len(cache_files(tmp_path)) == 4


def test_ansibles_templates_compile_through_the_cache(plugin, tmp_path):
    from ansible._internal._datatag._tags import Origin
    from ansible._internal._templating._jinja_bits import AnsibleEnvironment
    from ansible.template import Templar, trust_as_template
    assert AnsibleEnvironment.compile.__qualname__ == "template_cache.<locals>.cached_template_compile"
    assert AnsibleEnvironment.compile_expression.__qualname__ == \
        "template_cache.<locals>.cached_compile_expression"
    playbook = tmp_path / "play.yml"  # (where the templates are written, as Ansible tags them)
    playbook.write_text("- hosts: all\n")
    origin = Origin(path=str(playbook), line_num=1)
    for _ in range(2):
        templar = Templar(variables={"numbers": [1, 2], "sep": ","})
        assert templar.template(origin.tag(trust_as_template("{{ numbers | map('string') | join(sep) }}"))) == "1,2"
        assert templar.evaluate_conditional(origin.tag(trust_as_template("numbers | length == 2"))) is True
    assert len(cache_files(tmp_path)) == 2


def test_text_from_a_vault_is_never_kept_on_disk(plugin, tmp_path):
    """A template's code holds its text: one from a vault (a !vault value, a value of
    a vault-encrypted vars file, a file decrypted for the template module) or of no
    known file stays in the process."""
    from ansible._internal._datatag._tags import Origin, SourceWasEncrypted, VaultedValue
    from ansible.template import Templar, trust_as_template
    plain, vaulted = tmp_path / "vars.yml", tmp_path / "vault.yml"
    plain.write_text("a: '{{ x }}'\n")
    vaulted.write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    templar = Templar(variables={"x": 1})
    cases = [
        ("from a plain file", Origin(path=str(plain), line_num=1).tag(trust_as_template("{{ x }} a")), True),
        ("from a vault-encrypted file", Origin(path=str(vaulted), line_num=1).tag(trust_as_template("{{ x }} b")),
         False),
        ("a !vault value", VaultedValue(ciphertext="6162").tag(
            Origin(path=str(plain), line_num=1).tag(trust_as_template("{{ x }} c"))), False),
        ("a decrypted file", SourceWasEncrypted().tag(
            Origin(path=str(plain), line_num=1).tag(trust_as_template("{{ x }} d"))), False),
        ("of no known file", trust_as_template("{{ x }} e"), False),
    ]
    for what, source, kept in cases:
        before = len(cache_files(tmp_path))
        assert templar.template(source) == f"1 {source[-1]}", what
        assert len(cache_files(tmp_path)) == before + kept, what


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
    wrapped = plugin.frozen_start(start, lambda: seen.append(("before the fork", gc.get_freeze_count())))
    wrapped("worker")
    with pytest.raises(OSError):
        wrapped("failing")
    assert seen[0] == ("before the fork", 0) and seen[2][0] == "before the fork"
    assert seen[1][0] == "worker" and seen[1][1] > 1000 and seen[3][1] > 1000
    assert gc.get_freeze_count() == 0


def test_the_callback_under_other_strategies_installs_the_caches_once(plugin, monkeypatch):
    """ansible.cfg's flaskdeploy_caches callback loads this plugin's file again (under
    mitogen_linear both load it): the caches are installed once, not wrapped twice."""
    from ansible._internal._templating._jinja_bits import AnsibleEnvironment
    from ansible.executor.process.worker import WorkerProcess
    from ansible.plugins.strategy import StrategyBase

    def installed_now():
        return (WorkerProcess.start, AnsibleEnvironment.compile, AnsibleEnvironment.compile_expression,
                StrategyBase._queue_task)
    installed = installed_now()
    assert getattr(WorkerProcess.start, "flaskdeploy_caches", False)
    assert getattr(StrategyBase._queue_task, "flaskdeploy_skips", False)
    monkeypatch.delitem(sys.modules, "flaskdeploy_strategy_mitogen_linear", raising=False)
    spec = importlib.util.spec_from_file_location(
        "flaskdeploy_caches_callback", REPO / "plugins/callback/flaskdeploy_caches.py")
    callback = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(callback)
        callback.CallbackModule()
        caches = sys.modules["flaskdeploy_strategy_mitogen_linear"]
    finally:
        sys.modules.pop("flaskdeploy_strategy_mitogen_linear", None)
    # (its caches alone: no strategy, no mitogen)
    assert caches.CACHES_ONLY and not hasattr(caches, "StrategyModule") and caches.ansible_mitogen is None
    assert installed_now() == installed
    plugin.install_caches()
    assert installed_now() == installed


def test_ansible_starts_its_workers_frozen_with_the_jinja_plugins_loaded(plugin):
    from ansible.executor.process.worker import WorkerProcess
    assert WorkerProcess.start.__qualname__ == "frozen_start.<locals>.start_frozen"
    [before_fork] = [cell.cell_contents for cell in WorkerProcess.start.__closure__
                     if getattr(cell.cell_contents, "__qualname__", "") == "loaded_jinja_plugins.<locals>.load"]
    from ansible.plugins.loader import filter_loader, test_loader
    for loader in (filter_loader, test_loader):
        loader._clear_caches()  # (as adding a role's filter_plugins does)
    before_fork()
    assert "to_json" in filter_loader._cached_non_collection_wrappers
    assert "ansible.builtin.match" in test_loader._cached_non_collection_wrappers


def test_the_jinja_plugins_are_loaded_once_and_a_broken_loader_is_the_workers_to_report(plugin):
    """What the workers inherit: each loader's plugins, loaded when it holds none; a
    loader that fails to load them is left to fail in the worker, as before."""
    class Loader:
        def __init__(self, fails=False):
            self._cached_non_collection_wrappers, self.fails, self.loads = {}, fails, 0

        def _ensure_non_collection_wrappers(self):
            self.loads += 1
            self._cached_non_collection_wrappers["a"] = object()
            if self.fails:  # (after a first file: Ansible fills the dict file by file)
                raise ValueError("a broken filter file")
    good, broken = Loader(), Loader(fails=True)
    load = plugin.loaded_jinja_plugins((broken, good))
    load()
    load()
    assert good.loads == 1 and list(good._cached_non_collection_wrappers) == ["a"]
    assert broken.loads == 2 and broken._cached_non_collection_wrappers == {}


# A filter that writes down which process evaluated it (the controller, or a task's
# worker) and returns its input.
WHERE_FILTER = '''
import os


def where(value, name):
    with open(os.environ["WHERE_LOG"], "a") as log:
        log.write("%s %d\\n" % (name, os.getpid()))
    return value


class FilterModule:
    def filters(self):
        return {"where": where}
'''

SKIPS = """
- name: Conditions, evaluated before a worker is forked where the worker would skip
  hosts: localhost
  gather_facts: false
  # (the connection's user, which the worker's play context adds as ansible_user)
  remote_user: alice
  vars:
    user_seen: "{{ ansible_user | default('root') }}"
    hide: false
    # (the role's files/ is in the search path the worker adds)
    found: "{{ query('ansible.builtin.fileglob', 'extra.conf') }}"
  tasks:
    - name: False
      ansible.builtin.debug:
        msg: never
      when: "'false' | where('false') and false"
      register: false_result
    - name: True
      ansible.builtin.debug:
        msg: "ran true"
      when: "'true' | where('true') and true"
    - name: A false one without a log
      ansible.builtin.debug:
        msg: never
      when: "'secret' | where('no_log') and false"
      no_log: true
      register: secret_result
    - name: A false one whose no_log is a template, false
      ansible.builtin.debug:
        msg: never
      when: "'no_log-templated' | where('no_log-templated') and false"
      no_log: "{{ hide }}"
    - name: A block that is false
      when: "'block' | where('block') and false"
      block:
        - name: In the block
          ansible.builtin.debug:
            msg: never
    - name: A loop (a condition per item)
      ansible.builtin.debug:
        msg: never
      loop: [1]
      when: "'loop' | where('loop') and false"
    - name: Delegated
      ansible.builtin.debug:
        msg: never
      delegate_to: localhost
      when: "'delegated' | where('delegated') and false"
    - name: A lookup in the condition
      ansible.builtin.debug:
        msg: never
      when: "lookup('ansible.builtin.env', 'HOME') | where('lookup') and false"
    - name: An undefined variable, the worker's to report
      ansible.builtin.debug:
        msg: never
      when: "'undefined' | where('undefined') and no_such_variable"
      ignore_errors: true
    - name: A variable the worker adds (the connection's, not in the inventory)
      ansible.builtin.debug:
        msg: "ran connection"
      when: "'connection' | where('connection') and ansible_connection is defined"
    - name: A variable made of one the worker adds (the play's user)
      ansible.builtin.debug:
        msg: "ran user {{ user_seen }}"
      when: "'user' | where('user') and user_seen == 'alice'"
    - name: Not the default user
      ansible.builtin.debug:
        msg: never
      when: "'user-default' | where('user-default') and user_seen == 'root'"
    - name: A file of the role's, found through the worker's search path
      ansible.builtin.include_role:
        name: finder
    - name: What the skipped tasks registered
      ansible.builtin.debug:
        msg: "registered {{ false_result.skipped }} {{ false_result.false_condition }} {{ secret_result.skipped }}"
"""

FINDER_ROLE = """
- name: A file found only in the role's files/
  ansible.builtin.debug:
    msg: "ran found {{ found | map('basename') | list }}"
  when: "'found' | where('found') and found | length == 1"
"""


def where_run(tmp_path, log_name, arguments, **env):
    """ansible-playbook with arguments, the WHERE_FILTER in tmp_path/filter_plugins and
    the repository's ansible.cfg: its return code, output, {condition name: [pids that
    evaluated it]} and its own pid."""
    (tmp_path / "filter_plugins").mkdir(exist_ok=True)
    (tmp_path / "filter_plugins" / "where.py").write_text(WHERE_FILTER)
    log = tmp_path / log_name
    log.unlink(missing_ok=True)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               WHERE_LOG=str(log), **env)
    process = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), *arguments],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate(timeout=180)
    pids = {}
    for line in log.read_text().splitlines():
        name, pid = line.split()
        pids.setdefault(name, []).append(int(pid))
    return process.returncode, output, pids, process.pid


def run_skips(tmp_path, caches, strategy="linear"):
    """SKIPS with -v, under a strategy, with the project's callback (caches) or
    without it: the output and {condition name: [pids that evaluated it]}."""
    (tmp_path / "roles" / "finder" / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "roles" / "finder" / "tasks" / "main.yml").write_text(FINDER_ROLE)
    (tmp_path / "roles" / "finder" / "files").mkdir(exist_ok=True)
    (tmp_path / "roles" / "finder" / "files" / "extra.conf").write_text("x\n")
    (tmp_path / "play.yml").write_text(SKIPS)
    # (another list without it: Ansible refuses an empty one)
    callbacks = "flaskdeploy_caches" if caches else "ansible.posix.timer"
    arguments = ["-v", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")]
    rc, output, pids, pid = where_run(
        tmp_path, f"where-{caches}-{strategy}.log", arguments,
        ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), ANSIBLE_STRATEGY=strategy, ANSIBLE_CALLBACKS_ENABLED=callbacks)
    assert rc == 0, output
    return output, pids, pid


def shown(text):
    """What a user reads of a run, but what differs between the runs: the timer
    callback's recap (the run without the caches has it), mitogen's deprecation
    warning."""
    text = text.split("PLAYBOOK RECAP")[0].rstrip()
    return [line for line in text.splitlines()
            if not line.startswith(("[DEPRECATION WARNING]", "[WARNING]: Deprecation"))
            and "strategy plugins" not in line]


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_a_false_condition_is_skipped_in_the_controller_as_the_worker_would(tmp_path, strategy):
    """Where the worker would only skip, the controller sends its result without
    forking one, with the variables the worker would see; the output (-v: each
    result in full, no_log's censoring) is the same as without it; a loop, a
    delegated task, a lookup in the condition and a condition that fails are
    evaluated by the worker, as before."""
    output, pids, controller = run_skips(tmp_path, caches=True, strategy=strategy)
    plain, plain_pids, plain_controller = run_skips(tmp_path, caches=False)
    # Skipped in the controller, which evaluated the condition once: also with the
    # variables the worker adds (the connection's, the search path).
    for name in ("false", "no_log", "no_log-templated", "block", "user-default"):
        assert pids[name] == [controller], name
    # Evaluated by both, then the worker's: true conditions (the tasks run), one that
    # fails (the worker reports it).
    for name in ("true", "connection", "user", "found", "undefined"):
        assert pids[name][0] == controller and pids[name][1:] and controller not in pids[name][1:], name
    # The worker's alone: a loop, a delegated task, a lookup.
    for name in ("loop", "delegated", "lookup"):
        assert pids[name] and controller not in pids[name], name
    # Without the callback (and mitogen's strategy) every condition is a worker's.
    assert all(plain_controller not in found for found in plain_pids.values())
    assert shown(output) == shown(plain)
    for line in ("ran true", "ran connection", "ran user alice", "ran found ['extra.conf']",
                 "registered True 'false' | where('false') and false True", "is undefined",
                 "censored: 'the output has been hidden due to the fact that"):
        assert line in output, line


IN_CONTROLLER = """
- name: The tasks of one host, run in the controller
  hosts: all
  gather_facts: false
  vars:
    ansible_connection: local
  tasks:
    - name: A module, its argument through the filter
      ansible.builtin.command: "echo {{ 'module' | where('module') }}"
      register: echoed
      changed_when: false
    - name: A loop
      ansible.builtin.debug:
        msg: "item {{ item | where('loop') }}"
      loop: [1, 2]
    - name: Once hidden
      ansible.builtin.set_fact:
        phase: one
      changed_when: true
      notify: Show the phase
    - name: Run the handler now
      ansible.builtin.meta: flush_handlers
    - name: Then shown
      ansible.builtin.set_fact:
        phase: two
      changed_when: true
      notify: Show the phase
    - name: Run the handler again
      ansible.builtin.meta: flush_handlers
    - name: A task over its time
      ansible.builtin.command: sleep 30
      timeout: 2
      ignore_errors: true
      register: slow
    - name: A failure, rescued
      block:
        - name: Fails
          ansible.builtin.fail:
            msg: "failed on purpose"
      rescue:
        - name: Rescued
          ansible.builtin.debug:
            msg: "rescued {{ ansible_failed_result.msg }}"
    - name: What they registered
      ansible.builtin.debug:
        msg: "registered {{ echoed.stdout }} {{ slow.failed }}"
  handlers:
    # The same handler object, run twice: its templated attributes must not stay
    # from the first run.
    - name: Show the phase
      ansible.builtin.debug:
        msg: "phase {{ phase | where('handler') }}"
      no_log: "{{ phase == 'one' }}"
"""

EXITS_ACTION = '''
import sys

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        sys.exit(3)
'''


def run_in_controller(tmp_path, strategy, hosts, play=IN_CONTROLLER):
    """play under a strategy for hosts (names, all on the local connection): the return
    code, output, {filter name: [pids]} and the controller's pid."""
    (tmp_path / "action_plugins").mkdir(exist_ok=True)
    (tmp_path / "action_plugins" / "exits.py").write_text(EXITS_ACTION)
    (tmp_path / "play.yml").write_text(play)
    return where_run(tmp_path, f"where-{strategy}-{len(hosts)}.log",
                     ["-i", ",".join(hosts) + ",", str(tmp_path / "play.yml")], ANSIBLE_STRATEGY=strategy)


def test_a_play_of_one_host_runs_its_tasks_in_the_controller_as_workers_would(tmp_path):
    """Under mitogen, the tasks of a play of one host run in the controller's process,
    not in a forked worker each, with what a user reads unchanged: a module's result,
    a loop, a handler run twice (its templated no_log and message anew each time), a
    task's timeout, a rescued failure. A play of two hosts forks a worker for each
    module's task as before; a debug runs in the controller for both."""
    rc, output, pids, controller = run_in_controller(tmp_path, "mitogen_linear", ["localhost"])
    assert rc == 0, output
    rc, plain, plain_pids, plain_controller = run_in_controller(tmp_path, "linear", ["localhost"])
    assert rc == 0, plain
    for name in ("module", "loop", "handler"):
        assert pids[name] and set(pids[name]) == {controller}, name
        assert plain_pids[name] and plain_controller not in plain_pids[name], name
    assert shown(output) == shown(plain)
    # (the first run of the handler hidden by its no_log, the second shown)
    assert "phase one" not in output
    for line in ("msg: phase two", "msg: item 2", "Timed out after 2 second(s)",
                 "msg: rescued failed on purpose", "msg: registered module True"):
        assert line in output, line
    rc, output, pids, controller = run_in_controller(tmp_path, "mitogen_linear", ["localhost", "127.0.0.1"])
    assert rc == 0, output
    assert len(pids["module"]) == 2 and controller not in pids["module"]
    # (but an action that never reaches the host: for each host, in the controller)
    assert len(pids["loop"]) == 4 and set(pids["loop"]) == {controller}
    assert len(pids["handler"]) == 4 and set(pids["handler"]) == {controller}


def test_an_action_that_exits_fails_its_task_and_the_run_goes_on(tmp_path):
    """In the controller, an action that ends its process (sys.exit) fails its task
    instead of ending the run."""
    rc, output, _, _ = run_in_controller(tmp_path, "mitogen_linear", ["localhost"], play="""
- name: An action that exits
  hosts: all
  gather_facts: false
  vars:
    ansible_connection: local
  tasks:
    - name: Exits
      exits:
      ignore_errors: true
      register: exited
    - name: Still running
      ansible.builtin.debug:
        msg: "still running {{ exited.failed }} {{ 'x' | where('after') }}"
""")
    assert rc == 0, output
    assert "msg: still running True x" in output, output
    assert "exited its process (3) instead of returning a result" in output, output


AFTER_CONTROLLER = """
- name: One host first, its tasks in the controller
  hosts: all[0]
  gather_facts: false
  vars:
    ansible_connection: local
  tasks:
    - name: A module in the controller
      ansible.builtin.command: "echo {{ 'first' | where('first') }}"
      changed_when: false
- name: Then two hosts, with workers
  hosts: all
  gather_facts: false
  vars:
    ansible_connection: local
  tasks:
    - name: A module in a worker for each
      ansible.builtin.command: "echo {{ 'second' | where('second') }}"
      changed_when: false
    - name: A debug that calls a lookup, in a worker for each (side by side)
      ansible.builtin.debug:
        msg: "{{ lookup('ansible.builtin.env', 'HOME') | where('lookup') }}"
    - name: A debug retried until it passes, in a worker for each
      ansible.builtin.debug:
        msg: "{{ 'retried' | where('retried') }}"
      register: retried
      until: retried is not failed
      retries: 1
    - name: A plain debug, in the controller for each
      ansible.builtin.debug:
        msg: "{{ 'plain' | where('plain') }}"
"""


def test_workers_forked_after_tasks_run_in_the_controller_reach_their_hosts(tmp_path):
    """A play of several hosts after one of one host: its workers are forked with no
    connection of mitogen's left open in the controller (they would wait forever on
    it), and a debug that calls a lookup or is retried still runs in a worker for
    each host, side by side."""
    rc, output, pids, controller = run_in_controller(tmp_path, "mitogen_linear", ["localhost", "127.0.0.1"],
                                                     play=AFTER_CONTROLLER)
    assert rc == 0, output
    assert pids["first"] == [controller]
    for name in ("second", "lookup", "retried"):
        assert len(pids[name]) == 2 and controller not in pids[name], name
    assert pids["plain"] == [controller, controller]


def test_a_connection_mitogen_does_not_take_over_runs_in_a_worker(tmp_path):
    """A host on a connection mitogen does not take over (here local by its full name)
    runs its tasks in workers, as before: its ssh or sudo could otherwise prompt on the
    user's terminal."""
    rc, output, pids, controller = run_in_controller(tmp_path, "mitogen_linear", ["localhost"], play="""
- name: A connection by its full name
  hosts: all
  gather_facts: false
  vars:
    ansible_connection: ansible.builtin.local
  tasks:
    - name: A module, in a worker
      ansible.builtin.command: "echo {{ 'module' | where('module') }}"
      changed_when: false
    - name: A debug, in the controller still
      ansible.builtin.debug:
        msg: "{{ 'debug' | where('debug') }}"
""")
    assert rc == 0, output
    assert len(pids["module"]) == 1 and controller not in pids["module"]
    assert pids["debug"] == [controller]
