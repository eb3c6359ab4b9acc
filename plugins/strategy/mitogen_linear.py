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
again; a cache that cannot be written is skipped. The Python that Jinja generates for
a template goes through the same cache: each task runs in a new worker process, which
compiled again every template it rendered.

Each worker is forked from the controller with the garbage collector's objects frozen
(gc.freeze): the worker's collections then leave the inherited objects alone rather
than write to, and so copy, every page holding one. The controller unfreezes them
right after the fork, into its oldest generation: its young garbage then waits for
a full collection (1.5 MB more over 900 task runs, measured once; docs/performance.md).
Both changes together, not measured apart, took about a tenth off the controller's
CPU in a no-op site.yml; the cache spares only Python's compile of the generated
code (Jinja still parses each template in each worker).
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


def cached_compile(source, filename, mode, *args, **kwargs):
    """compile(), with the code kept on disk between runs (the calls mitogen makes:
    a module's source, its name, "exec"; any other call is compile's own)."""
    if args or kwargs or not isinstance(source, (bytes, str)):
        return compile(source, filename, mode, *args, **kwargs)
    fd = _open_private_dir(code_cache_dir())
    if fd is None:
        return compile(source, filename, mode)
    try:
        data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
        key = hashlib.sha256(b"\0".join([
            importlib.util.MAGIC_NUMBER, sys.version.encode(), type(source).__name__.encode(),
            os.fsencode(filename), mode.encode(), data])).hexdigest()
        try:
            with open(key, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)) as cached:
                code = marshal.load(cached)
            if isinstance(code, types.CodeType):
                return code
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = compile(source, filename, mode)
        # A name of its own per writer (mitogen scans in several threads), then renamed
        # into place: a reader sees the whole entry or none.
        temporary = "%s.%s.tmp" % (key, secrets.token_hex(8))
        try:
            with open(temporary, "wb", opener=lambda name, flags: os.open(
                    name, flags | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)) as fresh:
                marshal.dump(code, fresh)
            os.replace(temporary, key, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            try:
                os.unlink(temporary, dir_fd=fd)
            except OSError:
                pass
        return code
    finally:
        os.close(fd)


def frozen_start(start):
    """WorkerProcess.start with the collector's objects frozen across the fork: the
    worker's collections leave the objects it inherits alone, so do not write to
    (and copy) every page that holds one."""
    def start_frozen(self):
        gc.freeze()
        try:
            return start(self)
        finally:
            # The controller's own collections see them again.
            gc.unfreeze()
    return start_frozen


try:
    import ansible_mitogen.strategy
except ImportError:
    Display().warning("mitogen is not installed (pip install mitogen): running with the plain "
                      "linear strategy, which is slower.")

    class StrategyModule(LinearStrategyModule):
        pass

else:
    import ansible_mitogen.module_finder
    import jinja2.environment
    import mitogen.master
    from ansible.executor.process.worker import WorkerProcess

    # The two places mitogen compiles a module to read its imports (a name in the
    # module's globals comes before the builtin), and where Jinja compiles the Python
    # it generates for a template: each task's worker is a new process, which
    # compiled again every template it renders.
    ansible_mitogen.module_finder.compile = cached_compile
    mitogen.master.compile = cached_compile
    jinja2.environment.compile = cached_compile
    WorkerProcess.start = frozen_start(WorkerProcess.start)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, LinearStrategyModule):
        def run(self, iterator, play_context, *args, **kwargs):
            # The play's own `connection:` keyword (the play context holds the default).
            if getattr(iterator._play, "connection", None) in ("local", "ansible.builtin.local"):
                return LinearStrategyModule.run(self, iterator, play_context, *args, **kwargs)
            return super().run(iterator, play_context, *args, **kwargs)
