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
"""

DOCUMENTATION = """
name: mitogen_linear
short_description: Mitogen's linear strategy, or the plain linear one without mitogen
description:
  - Runs the linear strategy through mitogen when the C(mitogen) Python package is
    installed; otherwise warns once and runs the plain linear strategy.
author: flaskdeploy contributors
"""

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.utils.display import Display

try:
    import ansible_mitogen.strategy
except ImportError:
    Display().warning("mitogen is not installed (pip install mitogen): running with the plain "
                      "linear strategy, which is slower.")

    class StrategyModule(LinearStrategyModule):
        pass

else:
    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, LinearStrategyModule):
        def run(self, iterator, play_context, *args, **kwargs):
            # The play's own `connection:` keyword (the play context holds the default).
            if getattr(iterator._play, "connection", None) in ("local", "ansible.builtin.local"):
                return LinearStrategyModule.run(self, iterator, play_context, *args, **kwargs)
            return super().run(iterator, play_context, *args, **kwargs)
