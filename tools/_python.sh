# Sourced by the launch scripts: the interpreter of the project environment
# (tools/setup_env.sh creates <repo>/.venv), else MMCVT_VENV, else `python`.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${MMCVT_VENV:-}" ] && [ -x "$MMCVT_VENV/bin/python" ]; then
    PYTHON=${PYTHON:-$MMCVT_VENV/bin/python}
elif [ -x "$_root/.venv/bin/python" ]; then
    PYTHON=${PYTHON:-$_root/.venv/bin/python}
else
    PYTHON=${PYTHON:-python}
fi
