"""Action plugin: runs the module runner_leftovers in the task's worker process when the task runs on this
machine (plugin_utils/inprocess.py), else sends the module as usual."""

from __future__ import annotations

from ansible_collections.etcdproxy.operator.plugins.plugin_utils.inprocess import InProcessAction


class ActionModule(InProcessAction):
    module = "runner_leftovers"
