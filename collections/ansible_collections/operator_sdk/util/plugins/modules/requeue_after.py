#!/usr/bin/python
"""Documentation for the requeue_after action plugin."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: requeue_after
short_description: Ask ansible-operator to reconcile again after a period
description:
  - ansible-operator requeues the current resource after O(period) when a task with this
    action succeeds. Runs as an action plugin on the controller; no module is executed.
  - Make it the last task: ansible-operator stops reading the run's events when it sees it.
options:
  period:
    description: A Go duration, for example C(30s) or C(5m).
    type: str
    required: true
attributes:
  check_mode:
    support: full
author: etcdproxy-operator developers
"""

EXAMPLES = r"""
- name: Look again in 30 seconds
  operator_sdk.util.requeue_after:
    period: 30s
"""

RETURN = r"""
period:
  description: The period, echoed for ansible-operator.
  returned: always
  type: str
  sample: 30s
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec=dict(period=dict(type="str", required=True)), supports_check_mode=True)
    module.exit_json(changed=False, period=module.params["period"])


if __name__ == "__main__":
    main()
