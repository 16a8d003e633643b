#!/usr/bin/env bash
# The test command: sets up the environment (idempotent; see tools/setup_env.sh),
# lints the code (ruff, configured in pyproject.toml) and runs the whole test
# suite. Extra arguments go to pytest alone (no lint), e.g.
#   bash tools/run_tests.sh tests/test_models -k equivalence
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
source "$ROOT/tools/_python.sh"
cd "$ROOT"
if [ $# -gt 0 ]; then
    exec "$PYTHON" -m pytest -p no:cacheprovider -ra --durations=15 "$@"
fi
# style (seconds): pyflakes, import order and line length of everything, as
# configured in pyproject.toml; the suite runs either way, a finding fails
echo "ruff check mmcvt tools tests configs"
lint=0
"$PYTHON" -m ruff check mmcvt tools tests configs || lint=$?
rc=0
"$PYTHON" -m pytest -p no:cacheprovider -ra --durations=15 tests || rc=$?
if [ "$lint" -ne 0 ]; then
    echo "run_tests: ruff found style problems (above); fix them, or let" \
        "ruff fix what it can: $PYTHON -m ruff check --fix mmcvt tools tests configs" >&2
    [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
