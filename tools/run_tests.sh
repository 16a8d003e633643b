#!/usr/bin/env bash
# The test command: sets up the environment (idempotent; see tools/setup_env.sh)
# and runs the whole test suite. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh tests/test_models -k equivalence
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
source "$ROOT/tools/_python.sh"
cd "$ROOT"
if [ $# -eq 0 ]; then set -- tests; fi
exec "$PYTHON" -m pytest -p no:cacheprovider -ra --durations=15 "$@"
