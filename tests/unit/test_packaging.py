"""What can be checked of the image and the role's interface without a Docker engine."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def dockerfile_lines() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_copy_source_exists():
    copies = [line.split()[1:-1] for line in dockerfile_lines() if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for src in sources:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_base_image_tag_is_the_pinned_ansible_operator():
    (base,) = [line.split()[1] for line in dockerfile_lines() if line.startswith("FROM ")]
    gomod = (REPO / "hack/tools/ansible-operator/go.mod").read_text()
    pinned = re.search(r"ansible-operator-plugins (v\S+)", gomod).group(1)
    assert base == f"quay.io/operator-framework/ansible-operator:{pinned}"


def test_image_installs_exactly_the_venv_runtime_pins():
    assert "-r requirements-runtime.txt" in (REPO / "requirements.txt").read_text()
    runs = " ".join(line for line in dockerfile_lines() if line.startswith("RUN "))
    assert "pip install --no-cache-dir -r ${HOME}/requirements-runtime.txt" in runs
    pins = [line for line in (REPO / "requirements-runtime.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert pins and all("==" in p for p in pins)


def test_image_finds_the_collections_it_copies_first():
    """etcdproxy.operator and operator_sdk.util come from the repo (no Galaxy), ahead of the base image's
    own operator_sdk.util (the in-cluster run found that an ANSIBLE_COLLECTIONS_PATH without them
    leaves every etcdproxy.operator module unresolvable)."""
    assert "COPY collections/ ${HOME}/collections/" in dockerfile_lines()
    (env,) = [line for line in dockerfile_lines() if line.startswith("ENV ")]
    path = env.split("ANSIBLE_COLLECTIONS_PATH=")[1].split()[0]
    assert path.split(":")[0] == "${HOME}/collections"
    assert "galaxy.ansible.com" not in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize("role", ["etcdstorage", "etcdstoragebackup"])
def test_argument_specs_match_defaults(role):
    defaults = yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text())
    specs = yaml.safe_load((REPO / f"roles/{role}/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for key, opt in options.items():
        assert opt.get("description"), key


def test_watches_point_at_the_roles():
    watches = yaml.safe_load((REPO / "watches.yaml").read_text())
    assert [w["kind"] for w in watches] == ["EtcdStorage", "EtcdStorageBackup"]
    for watch in watches:
        assert (REPO / "roles" / watch["role"] / "tasks" / "main.yml").exists()
        assert watch["manageStatus"] is False
    # The EtcdStorage finalizer runs the role's cleanup alone (ansible-operator resolves the path against its
    # working directory: the repository here, the image's home there, where the Dockerfile copies playbooks/).
    (storage,) = [w for w in watches if w["kind"] == "EtcdStorage"]
    (play,) = yaml.safe_load((REPO / storage["finalizer"]["playbook"]).read_text())
    (task,) = play["tasks"]
    assert task["ansible.builtin.import_role"] == {"name": storage["role"], "tasks_from": "cleanup"}
    assert play["hosts"] == "localhost" and play["gather_facts"] is False


def test_the_role_knows_the_reconcile_period_of_watches_yaml():
    """A certificate due sooner than the periodic reconcile gets a requeue at its due time; the role passes
    the period to the module in seconds, so the two must agree (else a renewal waits a whole period)."""
    (storage,) = [w for w in yaml.safe_load((REPO / "watches.yaml").read_text()) if w["kind"] == "EtcdStorage"]
    hours, minutes, seconds = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", storage["reconcilePeriod"]).groups()
    period = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    defaults = yaml.safe_load((REPO / "roles/etcdstorage/defaults/main.yml").read_text())
    assert defaults["etcdstorage_reconcile_period_seconds"] == period
    # Bounded (what ansible-runner survives is the test below).
    assert storage["maxRunnerArtifacts"] <= 5


def module_calls(tasks: list[dict], module: str) -> list[dict]:
    """Every call of `module` in a task list, blocks and rescues included."""
    calls = []
    for task in tasks:
        calls += [task[module]] if module in task else []
        for part in ("block", "rescue", "always"):
            calls += module_calls(task.get(part, []), module)
    return calls


@pytest.mark.parametrize("module", ["etcdstorage_reconcile", "etcdstorage_status"])
def test_every_status_writing_call_requeues_within_the_reconcile_period(module):
    """Each call that decides the next requeue knows the period (its default, 10 min, would requeue a certificate
    due later only at the 6 h sweep)."""
    calls = []
    for path in (REPO / "roles/etcdstorage/tasks").glob("*.yml"):
        calls += module_calls(yaml.safe_load(path.read_text()) or [], f"etcdproxy.operator.{module}")
    assert calls
    for args in calls:
        assert args.get("max_requeue_seconds") == "{{ etcdstorage_reconcile_period_seconds }}", args.get("name")


def test_the_report_of_a_refused_apply_keeps_what_the_reconcile_reported():
    """The rescue's etcdstorage_status writes the whole .status again: it must get what the reconcile's own status
    step got besides the apply, or each refused retry drops a condition (a clone's Restored) or adds one
    (CertificatesReady when certificates are not managed), and the next run puts it back with an Event."""
    (report,) = module_calls(yaml.safe_load((REPO / "roles/etcdstorage/tasks/proxy.yml").read_text()),
                             "etcdproxy.operator.etcdstorage_status")
    assert report["extra_status"] == "{{ etcdstorage_status_result.extra_status or omit }}"
    assert report["restore_condition"] == "{{ etcdstorage_status_result.restore_condition or omit }}"
    assert report["certificate_problems"] == (
        "{{ etcdstorage_status_result.problems if etcdstorage_manage_certificates | bool else omit }}")
    (reconcile,) = module_calls(yaml.safe_load((REPO / "roles/etcdstorage/tasks/status.yml").read_text()),
                                "etcdproxy.operator.etcdstorage_reconcile")
    shared = set(reconcile) - {"uid", "spec", "annotations", "manage_certificates", "ca_overlap", "job_image",
                               "proxy_objects"}
    assert shared <= set(report), shared - set(report)


def guard_dockerfile_lines() -> list[str]:
    text = (REPO / "guard/Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_guard_image_builds_the_sources_and_pins_the_tests_use():
    lines = guard_dockerfile_lines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ") and "--from" not in line]
    assert copies
    for sources in copies:
        for src in sources:
            assert list((REPO / "guard").glob(src)), f"guard/Dockerfile copies {src}, which does not exist"
    # The builder's Go is at least what go.mod asks for, and what the tests build with is the same module.
    builder = next(line.split()[1] for line in lines if line.startswith("FROM ") and " AS build" in line)
    go_directive = re.search(r"^go (\d+)\.(\d+)", (REPO / "guard/go.mod").read_text(), re.M)
    major, minor = (int(x) for x in builder.split(":")[1].split(".")[:2])
    assert (major, minor) >= (int(go_directive.group(1)), int(go_directive.group(2)))
    assert "build_guard" in (REPO / "hack/install-tools.sh").read_text()
    assert "USER 65534:65534" in lines


def test_guard_command_and_image_in_the_pod():
    template = (REPO / "roles/etcdstorage/templates/proxy.yaml.j2").read_text()
    assert "            - etcdproxy-guard\n" in template
    assert "/usr/local/bin/etcdproxy-guard" in (REPO / "guard/Dockerfile").read_text()
    defaults = yaml.safe_load((REPO / "roles/etcdstorage/defaults/main.yml").read_text())
    manager = yaml.safe_load((REPO / "config/manager/kustomization.yaml").read_text())
    tag = manager["images"][0]["newTag"]
    assert f"'etcdproxy-guard:{tag}'" in defaults["etcdstorage_guard_image"]
    assert manager_env()["ETCDPROXY_GUARD_IMAGE"] == f"etcdproxy-guard:{tag}"


def manager_env() -> dict[str, object]:
    """The manager container's environment as config/manager ships it (a valueFrom stays a dict)."""
    manager = yaml.safe_load((REPO / "config/manager/manager.yaml").read_text())
    (container,) = manager["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_harness_runs_the_operator_with_the_shipped_go_runtime_settings(tmp_path):
    """Figures measured on an operator the harness starts (make bench-scale) hold for the shipped one only if
    both run the Go process alike (GOGC sets the operator's memory)."""
    from localcp.operator import operator_env

    env = operator_env(tmp_path / "kubeconfig", "ns", "https://127.0.0.1:2379")
    assert env["GOGC"] == manager_env()["GOGC"]


def test_the_harness_runs_the_operator_on_the_python_the_image_ships():
    """The operator the tests and benchmarks start locally runs in the venv; its figures hold for the image
    only if the venv's interpreter is the image's (pyenv's 3.11 here is ~20 % slower at the same work)."""
    from localcp.images import PYTHON

    (python,) = re.findall(r"^PYTHON\s*:=\s*(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert python == f"/usr/bin/{PYTHON}"
    cfg = dict(line.split(" = ", 1) for line in (Path(sys.prefix) / "pyvenv.cfg").read_text().splitlines())
    assert cfg["executable"] == python, "the venv was made from another interpreter: make venv makes it again"


@pytest.mark.parametrize("kind", ["EtcdStorage", "EtcdStorageBackup"])
def test_runner_artifact_rotation_survives_a_latest_link_one_run_behind(kind, tmp_path, monkeypatch):
    """ansible-operator points artifacts/latest at a run only after that run's reconcile has returned, so the
    EtcdStorage's next run can start while `latest` still names the run before. ansible-runner's rotation (at
    each run's start, ordered by mtime, the link counting as its target) then finds the link tied with the
    oldest run it keeps; with 3 kept it could pick the link and fail the run ("Cannot call rmtree on a symbolic
    link", seen in the integration suite's operator log). Worst-case listing order: the link first."""
    from ansible_runner.utils import cleanup_artifact_dir

    (watch,) = [w for w in yaml.safe_load((REPO / "watches.yaml").read_text()) if w["kind"] == kind]
    keep = watch["maxRunnerArtifacts"]
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: sorted(real_listdir(path), key=lambda n: n != "latest"))
    latest = tmp_path / "latest"
    for run in range(1, keep + 4):
        (tmp_path / str(run)).mkdir()
        os.utime(tmp_path / str(run), (run * 10, run * 10))
        cleanup_artifact_dir(str(tmp_path), keep)  # the run starts
        if run == keep + 2:
            continue  # this run's reconcile returned; ansible-operator has not relinked yet, and the next starts
        latest.unlink(missing_ok=True)
        latest.symlink_to(tmp_path / str(run))
    assert latest.is_symlink() and latest.resolve().exists()
    assert str(keep + 3) in real_listdir(tmp_path)


MODULES = sorted((REPO / "collections/ansible_collections/etcdproxy/operator/plugins/modules").glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_every_module_documents_itself_in_yaml_that_parses(path):
    """ansible-doc and ansible-lint read these; ansible-lint only reads the modules a role calls in a way it
    checks, so a ": " inside a plain scalar went unnoticed in two modules."""
    import ast

    docs = {node.targets[0].id: node.value.value for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    for name, text in docs.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.name} {name}: {exc}")
