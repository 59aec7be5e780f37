"""Our modules run in the task's worker process (plugin_utils/inprocess.py): the stand-in for AnsibleModule
validates, masks and returns as AnsibleModule does, and the real ansible takes that path only on this
machine."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail
from ansible_collections.etcdproxy.operator.plugins.plugin_utils.inprocess import InProcessModule, run_main

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "collections/ansible_collections/etcdproxy/operator/plugins"
SPEC = {
    "name": {"type": "str", "required": True},
    "token": {"type": "str", "no_log": True},
    "items": {"type": "list", "elements": "str", "default": []},
}


def module_main(body, spec=SPEC, **rules):
    """A main() shaped like ours: build the module, run, exit; failures reported with fail_json."""

    def main(module_class=None):
        module = module_class(argument_spec=spec, supports_check_mode=rules.pop("check", True), **rules)
        try:
            module.exit_json(**body(module))
        except Exception as exc:
            module.fail_json(msg=f"failed: {exc}")

    return main


def test_returns_what_the_module_exited_with_as_plain_json():
    result = run_main(module_main(lambda m: {"changed": True, "seen": m.params, "pair": (1, 2)}),
                      {"name": "a", "items": ("x", "y")}, check_mode=False)
    assert result == {"changed": True, "seen": {"name": "a", "token": None, "items": ["x", "y"]}, "pair": [1, 2]}


def test_no_log_values_are_masked_in_what_is_returned():
    result = run_main(module_main(lambda m: {"changed": False, "echo": f"token is {m.params['token']}"}),
                      {"name": "a", "token": "s3cr3t-value"}, check_mode=False)
    assert "s3cr3t-value" not in json.dumps(result)
    assert result["changed"] is False


def test_bad_arguments_fail_naming_the_option_before_the_module_runs():
    ran = []
    result = run_main(module_main(lambda m: ran.append(1) or {}), {"items": ["x"]}, check_mode=False)
    assert result["failed"] is True and "name" in result["msg"] and not ran
    result = run_main(module_main(lambda m: ran.append(1) or {}), {"name": "a", "colour": "red"}, check_mode=False)
    assert result["failed"] is True and "colour" in result["msg"] and not ran


def test_a_failure_inside_the_module_is_reported_and_exit_is_not_caught_as_one():
    def boom(module):
        raise RuntimeError("the API server said no")

    failed = run_main(module_main(boom), {"name": "a"}, False)
    assert failed == {"failed": True, "msg": "failed: the API server said no"}
    # exit_json inside the module's try/except Exception ends the module; it is not turned into a failure
    assert run_main(module_main(lambda m: {"changed": True}), {"name": "a"}, False) == {"changed": True}


def test_check_mode_reaches_the_module_and_a_module_without_it_is_skipped():
    assert run_main(module_main(lambda m: {"check": m.check_mode}), {"name": "a"}, True) == {"check": True}
    result = run_main(module_main(lambda m: {"ran": True}, check=False), {"name": "a"}, True)
    assert result["skipped"] is True and "ran" not in result


def test_the_rules_of_the_argument_spec_apply():
    main = module_main(lambda m: {}, spec={"path": {"type": "str"}, "url": {"type": "str"}},
                       mutually_exclusive=[("path", "url")])
    assert "mutually exclusive" in run_main(main, {"path": "/a", "url": "http://b"}, False)["msg"]


def test_the_module_works_on_a_copy_of_the_task_arguments():
    args = {"name": "a", "items": ["x"]}
    run_main(module_main(lambda m: m.params["items"].append("y") or {}), args, False)
    assert args == {"name": "a", "items": ["x"]}


def test_a_main_that_never_exits_is_an_error():
    with pytest.raises(AnsibleActionFail):
        run_main(lambda module_class: module_class(argument_spec=SPEC), {"name": "a"}, False)


def test_direct_construction_masks_without_a_spec_error():
    module = InProcessModule({"name": "a", "token": "t0ken-xyz"}, False, SPEC)
    assert module.params["name"] == "a" and "t0ken-xyz" in module.no_log_values


@pytest.mark.parametrize("module", sorted(p.stem for p in (PLUGINS / "modules").glob("*.py")))
def test_every_module_has_the_action_plugin_that_runs_its_main(module):
    action = ast.parse((PLUGINS / "action" / f"{module}.py").read_text())
    assigned = [node for node in ast.walk(action) if isinstance(node, ast.Assign)]
    assert [(ast.unparse(node.targets[0]), ast.literal_eval(node.value)) for node in assigned] == [("module", module)]
    main = next(n for n in ast.parse((PLUGINS / "modules" / f"{module}.py").read_text()).body
                if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert [a.arg for a in main.args.args] == ["module_class"]
    assert "module_class(" in ast.unparse(main)


def ansible(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """``tmp``: ansible's temporary directories (an async task whose interpreter is missing leaves its module
    payload there, which would pile up in the home directory run after run)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_REMOTE_TMP": str(tmp / "remote"), "ANSIBLE_LOCAL_TEMP": str(tmp / "local"),
           "ANSIBLE_ASYNC_DIR": str(tmp / "async")}
    return subprocess.run([str(REPO / ".venv/bin/ansible"), "localhost", "-c", "local", *args],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_real_ansible_runs_our_module_in_its_worker_on_this_machine(tmp_path: Path):
    """A module process would need the interpreter, which does not exist: the answer is the module's own
    argument check, so it ran in ansible's worker."""
    out = ansible(tmp_path, "-m", "etcdproxy.operator.etcdstorage_status", "-a", "namespace=x",
                  "-e", "ansible_python_interpreter=/nonexistent/python")
    assert "missing required arguments: core_ca_configmap, core_ca_key, core_client_secret, name" in out.stdout, out


def test_real_ansible_sends_the_module_as_usual_when_it_does_not_run_here_in_the_foreground(tmp_path: Path):
    """An async task is sent as a module (ansible's async wrapper), so the missing interpreter shows."""
    out = ansible(tmp_path, "-m", "etcdproxy.operator.etcdstorage_status", "-a", "namespace=x", "-B", "30", "-P", "1",
                  "-e", "ansible_python_interpreter=/nonexistent/python")
    assert "missing required arguments" not in out.stdout
    assert "/nonexistent/python" in out.stdout + out.stderr, out


def test_the_playbook_process_itself_never_imports_our_modules(tmp_path):
    """ansible's linear strategy loads each task's action class in the playbook process; the module (and the
    kubernetes client) must be imported in the worker, which exits without the playbook process's teardown."""
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                        "    - name: Ours, run in the worker\n      etcdproxy.operator.etcdstorage_status:\n"
                        "        namespace: x\n      ignore_errors: true\n")
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('playbook process imported kubernetes:', 'kubernetes' in sys.modules))\n"
             f"sys.argv = ['ansible-playbook', {str(playbook)!r}]\n"
             "from ansible.cli.playbook import main\nmain()\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    out = subprocess.run([str(REPO / ".venv/bin/python"), "-c", probe], env=env, capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert "missing required arguments" in out.stdout, out
    assert "playbook process imported kubernetes: False" in out.stdout, out
