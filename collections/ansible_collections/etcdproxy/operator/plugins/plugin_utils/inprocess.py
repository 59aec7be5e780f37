"""Run one of our modules inside the task's worker process instead of as a module process.

Every task of a reconcile used to start a module process: the controller first builds the module's
AnsiballZ payload (it parses every module_utils file it ships, ~0.15 s, once per ansible-playbook
process, so once per reconcile), then a new Python unpacks it, imports ansible.module_utils.basic and
compiles our module_utils from the zip (no bytecode cache). Our modules only talk to the Kubernetes API
and the core etcd, so where they run does not matter as long as it is this machine: when the task runs
on the controller itself (local connection, no become, not async) the action plugin of the same name
calls the module's own ``main()`` here, handing it a stand-in for AnsibleModule that validates the
arguments with the module's argument spec through the validator AnsibleModule uses, masks no_log values
and returns plain JSON data. Anywhere else the module is sent as usual.
docs/design.md ("Our modules run in the task's worker") has the figures.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.json import AnsibleJSONEncoder
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.text.converters import jsonify
from ansible.module_utils.common.warnings import get_deprecation_messages, get_warning_messages
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as NormalAction


class ModuleExit(BaseException):
    """Ends a module's ``main()`` as ``sys.exit`` ends a module process. Not an Exception, so a module's
    ``except Exception`` around its ``exit_json`` does not catch it (nor would it catch SystemExit)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__()
        self.result = result


class InProcessModule:
    """What our modules use of AnsibleModule: ``params``, ``check_mode``, ``exit_json``, ``fail_json``.

    ``args``: the task's arguments as the module process would have received them (JSON types).
    The other arguments are AnsibleModule's: the argument spec and its rules (required_one_of, ...)."""

    def __init__(self, args: dict[str, Any], check_mode: bool, argument_spec: dict[str, Any],
                 supports_check_mode: bool = False, **rules: Any) -> None:
        self.check_mode = check_mode
        validated = ArgumentSpecValidator(argument_spec, **rules).validate(args)
        self.params: dict[str, Any] = validated.validated_parameters
        self.no_log_values: set[str] = set(validated._no_log_values)
        if validated.error_messages:
            self.fail_json(msg="; ".join(validated.error_messages))
        if check_mode and not supports_check_mode:
            raise ModuleExit({"skipped": True, "changed": False, "msg": "the module does not support check mode"})

    def exit_json(self, **result: Any) -> NoReturn:
        raise ModuleExit(self._returned(result))

    def fail_json(self, msg: str, **result: Any) -> NoReturn:
        raise ModuleExit(self._returned({**result, "failed": True, "msg": msg}))

    def _returned(self, result: dict[str, Any]) -> dict[str, Any]:
        """As AnsibleModule returns it: values of no_log options masked (None and booleans kept), warnings
        and deprecations collected, and through JSON, so the caller gets plain data."""
        for key, messages in (("warnings", get_warning_messages()), ("deprecations", get_deprecation_messages())):
            if messages:
                result[key] = list(messages)
        preserved = {k: v for k, v in result.items() if v is None or isinstance(v, bool)}
        masked = remove_values(result, self.no_log_values)
        masked.update(preserved)
        return json.loads(jsonify(masked))


def run_main(main: Callable[..., None], args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Call a module's ``main(module_class=...)`` with ``args`` and return what it exited with."""
    plain = json.loads(json.dumps(args, cls=AnsibleJSONEncoder, vault_to_text=True))
    try:
        main(module_class=partial(InProcessModule, plain, check_mode))
    except ModuleExit as done:
        return done.result
    raise AnsibleActionFail("the module returned without exit_json or fail_json")


MODULES = "ansible_collections.etcdproxy.operator.plugins.modules"


class InProcessAction(NormalAction):
    """The action plugin of one of our modules (same name); subclasses set ``module`` to its name.

    The module (and the kubernetes client it imports) is imported here, in the worker ansible forks for
    the task, not when the plugin class is loaded: ansible's linear strategy loads every task's action
    class in the playbook process, which would then import it even for skipped tasks, and pay its
    teardown (a Python with the kubernetes client loaded takes ~0.1 s longer to exit; workers leave with
    os._exit)."""

    module: str

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.runs_here():
            return super().run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)  # the base's checks only: nothing is sent anywhere
        main = importlib.import_module(f"{MODULES}.{self.module}").main
        result.update(run_main(main, self._task.args, bool(self._task.check_mode)))
        return result

    def runs_here(self) -> bool:
        """True when the module would run on this machine, as this user, in the foreground."""
        return (self._connection.transport == "local" and not self._play_context.become
                and not self._task.async_val)
