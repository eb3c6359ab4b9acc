"""Mitogen's linear strategy when mitogen is installed, Ansible's own otherwise.

Mitogen (https://mitogen.networkgenomics.com, ``pip install mitogen``) keeps one
Python interpreter per host for the whole run and caches the modules it has sent,
instead of starting Python and unpacking a module for every task. Here it makes a
no-op rerun of site.yml about twice as fast (docs/performance.md).

ansible.cfg names this directory, and ANSIBLE_STRATEGY=mitogen_linear selects the
strategy (ansible.cfg's own is Ansible's linear: no deprecation warning by default).
Without mitogen installed, the run goes on with the plain linear strategy, after one
warning, so an Ansible without mitogen still works.
Mitogen takes over only the connection types it knows by their short names (ssh,
local, docker, ...); a host on another one (e.g. community.docker.docker) runs as
usual.

A play on the controller itself (``connection: local`` in the play, or ``-c local``)
runs with the plain linear strategy: there is no connection to save there, and under
mitogen the async jobs of molecule's create and destroy playbooks never finished
("Wait for instance(s) deletion to complete" retried until it gave up).

Mitogen compiles the source of every module it sends, and of the module_utils they
import, to find their imports: again in every run, about a tenth of the controller's
CPU in a no-op site.yml (docs/performance.md). The compiled code is kept between runs
in ``${XDG_CACHE_HOME:-~/.cache}/flaskdeploy/mitogen-code`` (used only when it is
the user's, not a link, and no one else may write to it), one file per source, named
by the SHA-256 of the Python version, the module's name and its source: a changed
module is a new entry, never a stale one. A file that cannot be read is compiled
again; a cache that cannot be written is skipped.

What mitogen sends of each module is made anew in every run too: its source
minified (mitogen's own modules, the core among them) and compressed at zlib's
level 9 (8 % of the controller's user CPU in a code-only deploy,
docs/performance.md). Both results are kept in the same cache (cached_payload),
named by the SHA-256 of the function, its arguments and mitogen's version, and
checked as they are read (the minified text behind its own SHA-256; the compressed
bytes must decompress to the source): a damaged entry is made again.

The code Jinja makes of each template and expression Ansible renders is kept in the
same cache (template_cache): each task runs in a new worker process, which lexed,
parsed, generated and compiled again every template it rendered (2,400 in a no-op
site.yml, 470 of them distinct). An entry is named by everything the code is made
from, and is used only while the filters and tests it calls are still called the same
way (see template_cache).

Each worker is forked from the controller with the garbage collector's objects frozen
(gc.freeze): the worker's collections then leave the inherited objects alone rather
than write to, and so copy, every page holding one. The controller unfreezes them
right after the fork, into its oldest generation: its young garbage then waits for
a full collection (1.5 MB more over 900 task runs, measured once; docs/performance.md).
The frozen fork and a cache of Python's compile alone (before template_cache), not
measured apart, took about a tenth off the controller's CPU in a no-op site.yml;
template_cache another tenth (docs/performance.md).

These caches are the controller's alone: the flaskdeploy_caches callback, which
ansible.cfg enables, installs them under Ansible's own strategies too, from this
file (install_caches: once per process, whichever plugin loads it first).

Before each fork, the controller's filter and test loaders load their plugins if
they hold none (loaded_jinja_plugins): otherwise most workers loaded and wrapped
every filter and test plugin file again at their first filter (8 ms each; about -9 %
of the controller's CPU in a no-op site.yml, docs/performance.md).

A task whose `when` is false is skipped by the controller itself, with the
variables the worker would see, where the worker would do nothing else
(skipped_before_fork): no worker is forked for 56 of a no-op site.yml's 159 tasks
(about 6 % of the controller's CPU, docs/performance.md).

Under mitogen, a play (or serial batch) of one host runs its tasks in the
controller's own process, one after the other as the workers would, with no worker
forked (run_in_controller): the fork, the worker's start and its exit cost about
22 ms of CPU a task, more than a set_fact's or an assert's own work (a code-only
deploy: -18 % of the controller's CPU; docs/performance.md). The task run is a copy,
its variables too, and its result goes through the results queue as a worker's does.
Plays of several hosts fork their workers as before, but for the actions that never
reach a host (set_fact, assert, debug, fail, validate_argument_spec).
"""

DOCUMENTATION = """
name: mitogen_linear
short_description: Mitogen's linear strategy, or the plain linear one without mitogen
description:
  - Runs the linear strategy through mitogen when the C(mitogen) Python package is
    installed; otherwise warns once and runs the plain linear strategy.
author: flaskdeploy contributors
"""

import gc
import hashlib
import importlib.util
import marshal
import os
import secrets
import sys
import types
import zlib

from ansible.executor.process.worker import WorkerProcess
from ansible.plugins.loader import filter_loader, test_loader
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.utils.display import Display


def code_cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                        "flaskdeploy", "mitogen-code")


def _open_private_dir(directory):
    """A descriptor of the cache directory (made if missing, not through a link at its
    last component), or None when another user owns it or may write to it: a planted
    entry would change which modules mitogen finds and sends."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd


def _cache_read(key):
    """The bytes of the cache's entry `key`, or None (no entry, no usable cache)."""
    fd = _open_private_dir(code_cache_dir())
    if fd is None:
        return None
    try:
        with open(key, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)) as cached:
            return cached.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def _cache_write(key, data):
    """Keeps data as the cache's entry `key`, if the cache can be used."""
    fd = _open_private_dir(code_cache_dir())
    if fd is None:
        return
    # A name of its own per writer (mitogen scans in several threads), then renamed
    # into place: a reader sees the whole entry or none.
    temporary = "%s.%s.tmp" % (key, secrets.token_hex(8))
    try:
        with open(temporary, "wb", opener=lambda name, flags: os.open(
                name, flags | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)) as fresh:
            fresh.write(data)
        os.replace(temporary, key, src_dir_fd=fd, dst_dir_fd=fd)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=fd)
        except OSError:
            pass
    finally:
        os.close(fd)


def cached_compile(source, filename, mode, *args, **kwargs):
    """compile(), with the code kept on disk between runs (the calls mitogen makes:
    a module's source, its name, "exec"; any other call is compile's own)."""
    if args or kwargs or not isinstance(source, (bytes, str)):
        return compile(source, filename, mode, *args, **kwargs)
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    key = hashlib.sha256(b"\0".join([
        importlib.util.MAGIC_NUMBER, sys.version.encode(), type(source).__name__.encode(),
        os.fsencode(filename), mode.encode(), data])).hexdigest()
    cached = _cache_read(key)
    if cached is not None:
        try:
            code = marshal.loads(cached)
            if isinstance(code, types.CodeType):
                return code
        except (EOFError, ValueError, TypeError):
            pass
    code = compile(source, filename, mode)
    _cache_write(key, marshal.dumps(code))
    return code


def cached_payload(minimize_source, compress):
    """mitogen's minimize_source and zlib.compress, each result kept on disk between
    runs: the master makes a module's payload (minified, then compressed at level 9)
    anew in every run for every module it sends. Both are functions of their input
    alone; an entry is named by the SHA-256 of the function, its arguments and
    mitogen's version (a result that cannot be kept is made each time)."""
    import mitogen

    version = repr(getattr(mitogen, "__version__", "")).encode()

    def key(kind, data, *more):
        return hashlib.sha256(b"\0".join([kind, version, *more, data])).hexdigest()

    def cached_minimize_source(source):
        data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
        if not isinstance(data, bytes):
            return minimize_source(source)
        name = key(b"minimize_source", data, type(source).__name__.encode())
        cached = _cache_read(name)
        # (kept behind its own SHA-256: a damaged entry is made again)
        if cached is not None and hashlib.sha256(cached[32:]).digest() == cached[:32]:
            try:
                return cached[32:].decode("utf-8")
            except UnicodeDecodeError:
                pass
        result = minimize_source(source)
        try:
            text = result.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            return result
        _cache_write(name, hashlib.sha256(text).digest() + text)
        return result

    def cached_compress(data, level=-1, *args, **kwargs):
        if args or kwargs or not isinstance(data, bytes) or not isinstance(level, int):
            return compress(data, level, *args, **kwargs)
        name = key(b"zlib.compress", data, str(level).encode())
        cached = _cache_read(name)
        # (a damaged entry does not decompress to the data: made again)
        try:
            if cached is not None and zlib.decompress(cached) == data:
                return cached
        except zlib.error:
            pass
        result = compress(data, level)
        _cache_write(name, result)
        return result

    return cached_minimize_source, cached_compress


class CachedZlib(types.ModuleType):
    """The zlib module, its compress kept on disk (cached_payload): what mitogen's
    master module sees as `zlib`."""

    def __init__(self, compress):
        super().__init__("zlib")
        self.compress = compress

    def __getattr__(self, name):
        return getattr(zlib, name)


# What Jinja's lexer takes from the environment (the delimiters and the whitespace
# rules: all that Ansible lets a template's header override).
LEXER_SETTINGS = ("block_start_string", "block_end_string", "variable_start_string", "variable_end_string",
                  "comment_start_string", "comment_end_string", "line_statement_prefix", "line_comment_prefix",
                  "trim_blocks", "lstrip_blocks", "newline_sequence", "keep_trailing_newline")


def template_cache(environment_class, settings=lambda environment: (), versions=(),
                   persistable=lambda source: True):
    """Wraps environment_class's compile and compile_expression (Jinja's, as Ansible's
    AnsibleEnvironment subclasses it) so that the code Jinja makes of a template or an
    expression is kept in the cache and read back in the next worker, which otherwise
    lexes, parses, generates and compiles again every template it renders (each task
    runs in a new process; a no-op site.yml compiled 2,400 templates, 470 of them
    distinct).

    An entry's name is the SHA-256 of everything the code is made from: the versions
    (Python, Jinja, and those given in versions), the environment's class and its
    settings the code depends on (the delimiters and the other lexer settings a
    template may override, extensions, finalize; those settings(environment) returns:
    with Ansible, the compile context's escape_backslashes) and the source. Jinja then
    looks up only the filters and tests: the entry names each one the template uses
    with how Jinja passes it its arguments, and is used only while every one is still
    so (a collection upgraded, a filter gone or loaded since with a role: the template
    is compiled again). Only environments that fold no constants (optimized false, as
    Ansible's): folding runs filters while the code is made. A source that
    persistable(source) refuses (with Ansible: text from a vault) is kept in the
    process only, never on disk."""
    import contextvars

    from jinja2 import __version__ as jinja_version
    from jinja2 import nodes
    from jinja2.environment import Environment, TemplateExpression
    from jinja2.utils import internalcode

    original_compile = Environment.compile
    original_compile_expression = environment_class.compile_expression
    facts = tuple(versions)
    # name -> (code, the filters and tests it calls): this process's entries, checked
    # at each use (the plugins a name finds may change within a run).
    memo = {}
    # The expression compile_expression is compiling, for the compile call it makes.
    capture = contextvars.ContextVar("flaskdeploy_template_capture", default=None)

    def pass_arg(environment, kind, name):
        plugins = environment.filters if kind == "filter" else environment.tests
        try:
            function = plugins.get(name)
        except Exception:  # noqa: BLE001 - a plugin that fails to load: no entry
            return "?"
        if function is None:
            return None
        how = getattr(function, "jinja_pass_arg", None)
        return how.name if how is not None else "plain"

    def uses(environment, tree):
        found = set()
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            found.add((kind, node.name, pass_arg(environment, kind, node.name)))
        return tuple(sorted(found, key=repr))

    def key(environment, kind, source, *names):
        if getattr(environment, "_debuggable_template_source", False) or environment.optimized:
            return None  # (Ansible's template debugging writes each template's Python out)
        try:
            material = repr((facts, type(environment).__module__, type(environment).__qualname__,
                             environment.code_generator_class.__qualname__, sorted(environment.extensions),
                             getattr(environment.finalize, "__qualname__", repr(environment.finalize)),
                             getattr(getattr(environment.finalize, "jinja_pass_arg", None), "name", None),
                             environment.autoescape, environment.is_async,
                             environment.sandboxed, sorted(getattr(environment, "intercepted_binops", ())),
                             sorted(getattr(environment, "intercepted_unops", ())),
                             [getattr(environment, name) for name in LEXER_SETTINGS], settings(environment),
                             kind, names))
        except Exception:  # noqa: BLE001 - settings that cannot be named: not cached
            return None
        return hashlib.sha256(b"\0".join([
            importlib.util.MAGIC_NUMBER, sys.version.encode(), jinja_version.encode(),
            material.encode("utf-8", "surrogatepass"), source.encode("utf-8", "surrogatepass")])).hexdigest()

    def still_valid(environment, used):
        return not any(pass_arg(environment, kind, plugin) != how for kind, plugin, how in used)

    def lookup(environment, name):
        entry = memo.get(name)
        if entry is None:
            data = _cache_read(name)
            if data is None:
                return None
            try:
                entry = marshal.loads(data)
                if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], types.CodeType)):
                    return None
            except (EOFError, ValueError, TypeError):
                return None
        code, used = entry
        if not still_valid(environment, used):
            return None
        memo[name] = entry
        return code

    def store(name, source, code, used):
        memo[name] = (code, used)
        if not persistable(source):
            return
        try:
            data = marshal.dumps((code, used))
        except ValueError:  # (a name of another type than str: not kept on disk)
            return
        _cache_write(name, data)

    @internalcode
    def cached_template_compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        if raw:
            return original_compile(self, source, name, filename, raw, defer_init)
        if not isinstance(source, str):
            code = original_compile(self, source, name, filename, raw, defer_init)
            captured = capture.get()
            if captured is not None and isinstance(source, nodes.Template):
                captured.append((code, uses(self, source)))
            return code
        entry = key(self, "template", source, name, filename, defer_init)
        code = lookup(self, entry) if entry else None
        if code is not None:
            return code
        code = original_compile(self, source, name, filename, raw, defer_init)
        if entry:
            try:
                used = uses(self, self._parse(source, name, filename))
            except Exception:  # noqa: BLE001 - compiled, but not kept
                return code
            store(entry, source, code, used)
        return code

    @internalcode
    def cached_compile_expression(self, source, undefined_to_none=True):
        entry = key(self, "expression", source) if isinstance(source, str) else None
        code = lookup(self, entry) if entry else None
        if code is not None:
            # (what Jinja's compile_expression makes of the code it compiles)
            return TemplateExpression(self.template_class.from_code(self, code, self.make_globals(None), None),
                                      undefined_to_none)
        captured = []
        token = capture.set(captured)
        try:
            expression = original_compile_expression(self, source, undefined_to_none)
        finally:
            capture.reset(token)
        if entry and len(captured) == 1:
            store(entry, source, *captured[0])
        return expression

    environment_class.compile = cached_template_compile
    environment_class.compile_expression = cached_compile_expression
    return environment_class


def frozen_start(start, before_fork=lambda: None):
    """WorkerProcess.start with the collector's objects frozen across the fork: the
    worker's collections leave the objects it inherits alone, so do not write to
    (and copy) every page that holds one. before_fork() runs first, in the
    controller: what it makes, every worker inherits."""
    def start_frozen(self):
        before_fork()
        gc.freeze()
        try:
            return start(self)
        finally:
            # The controller's own collections see them again.
            gc.unfreeze()
    return start_frozen


def loaded_jinja_plugins(loaders):
    """Makes each of Ansible's Jinja plugin loaders (filters, tests) hold the plugins
    of its paths, as it does once asked for its first plugin, for the workers forked
    next. A worker otherwise loads and wraps every filter and test plugin file again
    at its first filter: about 8 ms, in most workers (1.3 s of a no-op site.yml's
    workers, measured once; docs/performance.md). Nothing when they hold them
    already; again after a role's filter_plugins were added (which empties them). A
    plugin file that fails to load is the worker's to report, as before: the loader
    is left empty (a failure partway leaves some loaded), and the worker loads them
    again and fails with the plugin's own error."""
    def load():
        for loader in loaders:
            if not getattr(loader, "_cached_non_collection_wrappers", True):
                try:
                    loader._ensure_non_collection_wrappers()
                except Exception:  # noqa: BLE001 - the worker loads them again and says why
                    loader._cached_non_collection_wrappers = {}
    return load


# A condition that calls a lookup is the worker's: it ran there once per host, side
# by side, where the controller would run it in turn (and once more when true).
LOOKUP_CALLS = ("lookup(", "query(", "q(")


def skipped_before_fork(original_queue_task):
    """StrategyBase._queue_task that first evaluates the task's `when` in the
    controller, with the variables the worker would see, and when it is false sends
    the worker's result itself (skipped, with the false condition, censored under
    no_log) instead of forking a worker that does nothing else: a third of a no-op
    site.yml's task results (docs/performance.md).

    The variables are the worker's: the task's, with the search path the worker adds
    (ansible_search_path) and the connection's variables its play context adds where
    the host has none (ansible_host, ansible_port, ansible_user, ...). Left to the
    worker as before: a loop (a condition per item), a delegate_to (the worker works
    out the delegated host's variables first), a condition that calls a lookup
    (side by side in the workers, once each), and any condition, no_log or throttle
    whose evaluation fails, warns or deprecates (the worker says it as before). A
    true condition is evaluated again by the worker. (A lookup reached through a
    variable the condition names runs in the controller, then in the worker if the
    condition is true: the text of the variables is not searched.)"""
    from ansible._internal import _display_utils
    from ansible._internal._templating._engine import TemplateEngine
    from ansible.executor.task_result import _RawTaskResult

    def worker_variables(strategy, host, task, task_vars, play_context):
        """What the worker evaluates `when` with (TaskExecutor: run, then
        _execute_internal up to the condition)."""
        variables = dict(task_vars)
        search_path = task.get_search_path()
        if strategy._loader.get_basedir() not in search_path:
            search_path.append(strategy._loader.get_basedir())
        variables["ansible_search_path"] = search_path
        templar = TemplateEngine(loader=strategy._loader, variables=variables)
        condition_variables = dict(variables)
        context = play_context.set_task_and_variable_override(task=task, variables=variables, templar=templar)
        context.post_validate(templar=templar)
        if not context.remote_addr:
            context.remote_addr = host.address
        context.update_vars(condition_variables)
        return templar, condition_variables

    def skip_result(strategy, host, task, task_vars, play_context):
        """The worker's result for a task whose `when` is false, or None."""
        if task.loop is not None or task.loop_with or task.delegate_to is not None:
            return None
        conditions = task.when
        if not conditions or any(isinstance(item, str) and any(call in item for call in LOOKUP_CALLS)
                                 for item in conditions):
            return None
        context = {}
        try:
            with _display_utils.DeferredWarningContext(variables=task_vars) as warnings:
                templar, variables = worker_variables(strategy, host, task, task_vars, play_context)
                int(templar.template(task.throttle))  # (a bad one: _queue_task says so)
                if task._resolve_conditional(conditions, variables, result_context=context):
                    return None
                result = dict(changed=False, skipped=True, skip_reason="Conditional result was False") | context
                task.update_result_no_log(templar, result)
        except Exception:  # noqa: BLE001 - the worker evaluates it again and reports it
            return None
        if warnings.get_warnings() or warnings.get_deprecation_warnings():
            return None
        return result

    def queue_task(self, host, task, task_vars, play_context):
        result = skip_result(self, host, task, task_vars, play_context)
        if result is None:
            return original_queue_task(self, host, task, task_vars, play_context)
        # What _queue_task and the worker do with a result: the task kept for the
        # result's return, the start announced, the result sent on the results queue
        # (a queue closed under it: most likely an abort, as _queue_task takes it).
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        self._tqm.send_callback("v2_runner_on_start", host, task)
        try:
            self._final_q.send_task_result(_RawTaskResult(
                host=host, task=task, return_data=result, task_fields=task.dump_attrs()))
        except (EOFError, OSError):
            return None
        self._pending_results += 1
        return None

    queue_task.flaskdeploy_skips = True
    return queue_task


# Actions left to a worker even for one host: they reset the host's connection and
# wait for it to come back (mitogen's connection in the controller is for one task).
FORKED_ACTIONS = frozenset(("reboot", "wait_for_connection"))
# Actions that never reach the host: run in the controller for every host of a play,
# one after the other (their own work is less than a fork).
CONTROLLER_ACTIONS = frozenset(("set_fact", "assert", "debug", "fail", "validate_argument_spec"))


def mentions(value, words):
    """Whether any string in value (nested lists and dicts) holds one of words."""
    if isinstance(value, str):
        return any(word in value for word in words)
    if isinstance(value, dict):
        return any(mentions(key, words) or mentions(item, words) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(mentions(item, words) for item in value)
    return False


def run_in_controller(mitogen_connections, worker_model):
    """A function that runs a task in the controller's own process where a worker
    would otherwise be forked for it, and says whether it did: a play, or a serial
    batch, of one host reached through one of mitogen's connections
    (mitogen_connections; one task at a time: the workers have nothing to run side
    by side). A fork, the worker's start and its exit cost about 22 ms of CPU a task,
    more than most tasks' own work in the controller (docs/performance.md).

    What a worker would change stays the worker's: the task is a copy (a task run
    again, for another host, in a loop, as a handler, starts from its parsed
    attributes), its variables a copy (the facts too: interpreter discovery writes
    there), and its result goes through the results queue (pickled, as the worker
    sends it; one that cannot be is reported as the worker reports it). The
    connection mitogen opened in the controller is closed after each task
    (worker_model(): mitogen's), also where an action opened one of its own: a
    worker forked later must not inherit it.

    Left to a worker: a play of several hosts, a throttled or delegated task, a
    connection mitogen does not take over (its ssh or sudo could prompt on the
    user's terminal), reboot and wait_for_connection; but the actions that never
    reach the host (set_fact, assert, debug, fail, validate_argument_spec) run in the
    controller in all of these but a throttled one, one host after the other, unless
    they would wait there: retried (until), paused between items, or calling a
    lookup (which the workers ran side by side)."""
    from ansible._internal import _task as task_context
    from ansible._internal._errors import _error_utils
    from ansible.errors import AnsibleError
    from ansible.executor.task_executor import TaskExecutor
    from ansible.executor.task_result import _RawTaskResult
    from ansible.plugins import loader as plugin_loader

    def eligible(strategy, task, task_vars, play_context):
        action = task.action.removeprefix("ansible.builtin.").removeprefix("ansible.legacy.")
        if task.throttle or action in FORKED_ACTIONS:
            return False
        if len(strategy._hosts_cache) == 1 and task.delegate_to is None:
            names = [task_vars.get("ansible_connection"), play_context.connection]
            if all(name in mitogen_connections for name in names if name):
                return True
        if action not in CONTROLLER_ACTIONS or task.until or task.retries:
            return False
        if task.loop_control and task.loop_control.pause:
            return False
        return not mentions([task.args, task.loop, task.loop_with], LOOKUP_CALLS)

    def own_variables(task_vars):
        variables = dict(task_vars)
        for name in ("ansible_facts", "ansible_delegated_vars"):
            if isinstance(variables.get(name), dict):
                variables[name] = dict(variables[name])
        return variables

    def close_connection():
        model = worker_model()
        if model is not None and getattr(model, "broker", None) is not None:
            model.on_binding_close()

    def run_here(strategy, host, task, task_vars, play_context):
        if not eligible(strategy, task, task_vars, play_context):
            return False
        strategy._queued_task_cache[(host.name, task._uuid)] = {
            "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
        strategy._tqm.send_callback("v2_runner_on_start", host, task)
        own = task.copy(exclude_parent=False, exclude_tasks=True)
        try:
            with task_context.TaskContext(own):
                result = TaskExecutor(host, own, own_variables(task_vars), play_context, strategy._loader,
                                      plugin_loader.get_plugin_loader_namespace(), strategy._final_q,
                                      strategy._variable_manager).run()
        except SystemExit as ex:  # (a worker's exit; here it would end the run)
            result = dict(failed=True, msg=f"The task exited its process ({ex.code}) instead of "
                          "returning a result.")
        finally:
            close_connection()
        try:
            try:
                strategy._final_q.send_task_result(_RawTaskResult(
                    host=host, task=task, return_data=result, task_fields=own.dump_attrs()))
            except (EOFError, OSError):
                return True  # (most likely an abort, as _queue_task takes it)
            except Exception as ex:  # noqa: BLE001 - WorkerProcess._run's answer to a result it cannot send
                try:
                    raise AnsibleError("Task result omitted due to queue send failure.") from ex
                except AnsibleError as wrapped:
                    strategy._final_q.send_task_result(_RawTaskResult(
                        host=host, task=task, return_data=_error_utils.result_dict_from_exception(wrapped),
                        task_fields={}))
        except (EOFError, OSError):
            return True
        strategy._pending_results += 1
        return True

    return run_here


def install_caches():
    """Installs the controller-side caches in this process, once whichever plugin loads
    this file (this strategy, or the flaskdeploy_caches callback under any other):
    workers forked frozen, with the Jinja plugins loaded, the code of Ansible's
    templates kept, and the tasks whose `when` is false skipped without a worker."""
    if getattr(WorkerProcess.start, "flaskdeploy_caches", False):
        return
    start = frozen_start(WorkerProcess.start, loaded_jinja_plugins((filter_loader, test_loader)))
    start.flaskdeploy_caches = True
    WorkerProcess.start = start
    try:
        from ansible.plugins.strategy import StrategyBase

        queue_task = skipped_before_fork(StrategyBase._queue_task)
        StrategyBase._queue_task = queue_task
    except (ImportError, AttributeError):
        pass
    # The code of Ansible's templates (each task's worker is a new process, which made
    # it again for every template it renders). Not where Ansible's internals differ.
    try:
        from ansible._internal._datatag import _tags
        from ansible._internal._templating import _jinja_bits, _jinja_common
        from ansible.parsing.vault import is_encrypted_file
        from ansible.release import __version__ as ansible_version

        def ansible_settings(environment):
            context = _jinja_bits._TemplateCompileContext.current(optional=True)
            return (getattr(context, "escape_backslashes", None), _jinja_common._TemplateConfig.allow_embedded_templates)

        vault_files = {}

        def not_from_a_vault(source):
            """Whether a template's text may be kept on disk: not a vault's plaintext
            (a !vault value, a file decrypted for the template module) nor a value of
            a vault-encrypted vars file (its Origin names the file: Ansible's own test
            of its header, once per file), and with a known origin at all."""
            if _tags.VaultedValue.is_tagged_on(source) or _tags.SourceWasEncrypted.is_tagged_on(source):
                return False
            origin = _tags.Origin.get_tag(source)
            path = getattr(origin, "path", None)
            if not path:
                return False
            if path not in vault_files:
                try:
                    with open(path, "rb") as text:
                        vault_files[path] = is_encrypted_file(text)
                except OSError:
                    vault_files[path] = True
            return not vault_files[path]

        # (the overrides a template's header may set: all in LEXER_SETTINGS)
        if not set(_jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES) <= set(LEXER_SETTINGS):
            raise AttributeError("Ansible's template overrides are not all Jinja's lexer settings")

        template_cache(_jinja_bits.AnsibleEnvironment, ansible_settings, ("ansible-core", ansible_version),
                       not_from_a_vault)
    except (ImportError, AttributeError):
        pass


install_caches()


# The flaskdeploy_caches callback loads this file for its caches alone, with
# FLASKDEPLOY_CACHES_ONLY set: under Ansible's own strategies mitogen is not
# imported (nor its version checked), and no strategy is defined.
CACHES_ONLY = bool(globals().get("FLASKDEPLOY_CACHES_ONLY"))
ansible_mitogen = None
if not CACHES_ONLY:
    try:
        import ansible_mitogen.strategy
    except ImportError:
        pass  # (ansible_mitogen stays None: the plain linear strategy below)

if CACHES_ONLY:
    pass
elif ansible_mitogen is None:
    class StrategyModule(LinearStrategyModule):
        def __init__(self, *args, **kwargs):
            # (once a run: Ansible says a warning once)
            Display().warning("mitogen is not installed (pip install mitogen): running with the plain "
                              "linear strategy, which is slower.")
            super().__init__(*args, **kwargs)

else:
    import ansible_mitogen.module_finder
    import ansible_mitogen.process
    import mitogen.master
    import mitogen.minify

    # The two places mitogen compiles a module to read its imports (a name in the
    # module's globals comes before the builtin).
    ansible_mitogen.module_finder.compile = cached_compile
    mitogen.master.compile = cached_compile
    # The payload of each module it sends: minified, compressed.
    _minimize_source, _compress = cached_payload(mitogen.minify.minimize_source, zlib.compress)
    mitogen.minify.minimize_source = _minimize_source
    mitogen.master.zlib = CachedZlib(_compress)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, LinearStrategyModule):
        _run_here = None  # (run_in_controller's, while mitogen runs the play)

        def run(self, iterator, play_context, *args, **kwargs):
            # The play's own `connection:` keyword (the play context holds the default).
            if getattr(iterator._play, "connection", None) in ("local", "ansible.builtin.local"):
                return LinearStrategyModule.run(self, iterator, play_context, *args, **kwargs)
            self._run_here = run_in_controller(ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS,
                                               ansible_mitogen.process.get_worker_model)
            try:
                return super().run(iterator, play_context, *args, **kwargs)
            finally:
                self._run_here = None

        def _queue_task(self, host, task, task_vars, play_context):
            if self._run_here and self._run_here(self, host, task, task_vars, play_context):
                return None
            return super()._queue_task(host, task, task_vars, play_context)
