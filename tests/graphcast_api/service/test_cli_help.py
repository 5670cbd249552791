"""Every program of graphcast_api answers --help with exit 0, lists exactly its exit codes,
and does so without importing torch (each in a fresh interpreter)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from graphcast_api import __main__ as cli
from graphcast_api.service import serve
from graphcast_api.tools import bench, predict, synthetic_era5, weights
from graphcast_contract.errors import exit_code_help
from graphcast_contract.project import PROJECT_ROOT

COMMANDS = ("serve", "predict", "bench", "fetch-weights", "fetch-example", "synthetic-era5")
# (module run with -m, its arguments, the exit codes its help lists)
PROGRAMS = [
    ("graphcast_api", [], cli.EXIT_CODES),
    ("graphcast_api", ["serve"], serve.EXIT_CODES),
    ("graphcast_api", ["predict"], predict.EXIT_CODES),
    ("graphcast_api", ["bench"], bench.EXIT_CODES),
    ("graphcast_api", ["fetch-weights"], weights.EXIT_CODES),
    ("graphcast_api", ["fetch-example"], weights.EXIT_CODES),
    ("graphcast_api", ["synthetic-era5"], synthetic_era5.EXIT_CODES),
    ("graphcast_api.predict", [], predict.EXIT_CODES),
    ("graphcast_api.bench", [], bench.EXIT_CODES),
    ("graphcast_api.synthetic_era5", [], synthetic_era5.EXIT_CODES),
]
RUN_WITHOUT_TORCH = (
    "import runpy, sys\n"
    "module = sys.argv[1]\n"
    "sys.argv = [module, *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    assert 'torch' not in sys.modules, 'torch was imported'\n"
)


@pytest.mark.parametrize("module, args, codes", PROGRAMS,
                         ids=[" ".join([m, *a]) for m, a, _ in PROGRAMS])
def test_help_exits_0_with_its_exit_codes_and_no_torch(module: str, args: list[str],
                                                        codes: tuple) -> None:
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_TORCH, module, *args, "--help"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m graphcast_api")
    epilog = result.stdout[result.stdout.index("exit codes:"):].rstrip()
    if module == "graphcast_api" and not args:
        assert epilog == exit_code_help(*codes) + "\n(each command's --help lists its own)"
        listed = {line.split()[0] for line in result.stdout.splitlines()
                  if line.startswith("    ") and line.split()}
        assert set(COMMANDS) <= listed
    else:
        assert epilog == exit_code_help(*codes)
