"""The import rules of the layout: the core stays numpy-only, the batch job never loads torch,
the service or Ray (only `--backfill` does), and the service's torch-free parts never load
torch (each checked in a fresh interpreter, whose sys.modules is clean)."""
from __future__ import annotations

import subprocess
import sys

from graphcast_contract.project import PROJECT_ROOT

# graphcast_api modules that must import without torch (only the forecaster needs it).
TORCH_FREE_API_MODULES = (
    "graphcast_api", "graphcast_api.engine", "graphcast_api.engine.configs",
    "graphcast_api.engine.stats", "graphcast_api.service.app", "graphcast_api.service.serve",
    "graphcast_api.tools.weights", "graphcast_api.tools.predict",
    "graphcast_api.tools.synthetic_era5",
)


def loaded_after(code: str) -> set[str]:
    """Top-level names of the packages in sys.modules after running `code` in a fresh
    interpreter at the project root."""
    listing = "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    script = f"{code}\nimport sys\n{listing}"
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_core_loads_no_torch_psycopg2_job_or_service() -> None:
    """Every module of graphcast_contract, found by walking the package, imported at once."""
    loaded = loaded_after(
        "import importlib, pkgutil, graphcast_contract\n"
        "for module in pkgutil.walk_packages(graphcast_contract.__path__, 'graphcast_contract.'):\n"
        "    importlib.import_module(module.name)")
    assert "graphcast_contract" in loaded
    assert "numpy" in loaded
    assert not loaded & {"torch", "psycopg2", "modules", "graphcast_api", "xarray", "requests"}


def test_the_batch_job_loads_neither_torch_nor_the_service_nor_ray() -> None:
    loaded = loaded_after("import trigger_and_ingest_forecast, modules.forecast_job")
    assert {"modules", "graphcast_contract"} <= loaded
    assert not loaded & {"torch", "graphcast_api", "ray", "backfill"}


def test_engine_configs_and_service_load_no_torch() -> None:
    loaded = loaded_after("\n".join(f"import {name}" for name in TORCH_FREE_API_MODULES))
    assert "graphcast_api" in loaded
    assert not loaded & {"torch", "modules"}
