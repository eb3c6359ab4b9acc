"""The controller-side caches of the mitogen_linear strategy, under any strategy.

ansible.cfg enables this callback (callbacks_enabled), so that a run with Ansible's
own linear strategy, the default, gets what plugins/strategy/mitogen_linear.py does
on the controller alone: the code Jinja makes of each template kept between runs
(~/.cache/flaskdeploy/mitogen-code), the workers forked with the collector's objects
frozen and the Jinja plugins loaded (docs/performance.md). A callback rather than a
strategy of our own: ansible-core 2.19 deprecates every strategy plugin outside
ansible.builtin, with a warning in each run. It reports nothing; Ansible loads it
before a playbook's first play, so before any worker is forked. It loads the
strategy's file for its caches alone (FLASKDEPLOY_CACHES_ONLY: mitogen is not
imported). Under ANSIBLE_STRATEGY=mitogen_linear the caches are installed once.
"""

DOCUMENTATION = """
name: flaskdeploy_caches
type: aggregate
short_description: flaskdeploy's controller-side caches (template code, workers' fork) under any strategy
description:
  - Installs the template code cache, the frozen fork and the Jinja plugins loaded before each fork that
    the mitogen_linear strategy plugin of this project installs, under Ansible's own strategies.
    Prints nothing.
requirements:
  - enabled in callbacks_enabled (this project's ansible.cfg does)
author: flaskdeploy contributors
"""

import importlib.util
import os
import sys

from ansible.plugins.callback import CallbackBase


def _strategy_module():
    """plugins/strategy/mitogen_linear.py, loaded once per process for its caches
    (it installs them as it loads, once whichever plugin loads it first)."""
    name = "flaskdeploy_strategy_mitogen_linear"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "strategy",
                            "mitogen_linear.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        module.FLASKDEPLOY_CACHES_ONLY = True  # (the caches: no mitogen, no strategy)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "flaskdeploy_caches"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _strategy_module().install_caches()
