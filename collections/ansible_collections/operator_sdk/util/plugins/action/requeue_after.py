"""Action plugin: tell ansible-operator when to reconcile again (no module process).

The collection name is borrowed on purpose: ansible-operator (ansible-operator-plugins v1.42.2,
internal/ansible/controller/reconcile.go) reads the period only from a task whose action is exactly
``operator_sdk.util.requeue_after`` (or the bare ``requeue_after``), so it cannot move into our own
collection. The duration format is etcdproxy.operator's (module_utils/times.py).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_go_duration


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("period",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        period = str(self._task.args.get("period", "")).strip()
        try:
            parse_go_duration(period)
        except ValueError as exc:
            raise AnsibleActionFail(f"period must be a Go duration such as 30s or 5m, got {period!r}") from exc
        # ansible-operator reads res.period of this task's event.
        result.update(changed=False, period=period)
        return result
