#!/usr/bin/env bash
# pytest with its exit codes made explicit: 5 ("no tests collected") is a failure here.
set -uo pipefail
"$(dirname "$0")/../.venv/bin/pytest" "$@"
rc=$?
case $rc in
  0) ;;
  5) echo "pytest collected no tests: treating that as a failure" >&2; rc=1 ;;
  *) echo "pytest failed (exit code $rc)" >&2 ;;
esac
exit $rc
