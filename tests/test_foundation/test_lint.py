"""The repository's lint configuration (ruff, pyproject.toml) is in force and
the code is clean under it (tools/run_tests.sh runs the same check first)."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _ruff(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, '-m', 'ruff', 'check', '--output-format', 'concise',
         *args], capture_output=True, text=True, cwd=cwd)


def test_the_code_is_clean_under_the_repository_config():
    result = _ruff('mmcvt', 'tools', 'tests', 'configs')
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_catches_what_it_should(tmp_path):
    """79 columns, pyflakes and the import order, from pyproject.toml."""
    probe = tmp_path / 'probe.py'
    probe.write_text('import sys\nimport os\n\n' + f'x = "{"a" * 74}"\n')
    result = _ruff('--config', osp.join(ROOT, 'pyproject.toml'), 'probe.py',
                   cwd=tmp_path)
    codes = {line.split()[1] for line in result.stdout.splitlines()
             if line.startswith('probe.py')}
    assert result.returncode == 1
    assert codes == {'E501', 'F401', 'I001'}, result.stdout
