"""Action plugin: tell ansible-operator when to reconcile again (no module process)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("period",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        period = str(self._task.args.get("period", "")).strip()
        if not _DURATION.match(period):
            raise AnsibleActionFail(f"period must be a Go duration such as 30s or 5m, got {period!r}")
        # ansible-operator reads res.period of this task's event.
        result.update(changed=False, period=period)
        return result
