"""The layout's rules: the job never loads torch or the service; the core loads neither side."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import graphcast_contract
from graphcast_contract.project import PROJECT_ROOT


def loaded_after(imports: str) -> set[str]:
    """The top-level packages loaded by a fresh interpreter after `imports`."""
    code = f"{imports}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=True)
    return set(done.stdout.split())


def test_the_batch_job_loads_neither_torch_nor_the_service() -> None:
    loaded = loaded_after("import trigger_and_ingest_forecast, modules.forecast_job")
    assert {"modules", "graphcast_contract"} <= loaded
    assert not loaded & {"torch", "graphcast_api"}


def test_the_core_loads_only_numpy() -> None:
    names = [f"graphcast_contract.{m.name}" for m in pkgutil.iter_modules(graphcast_contract.__path__)]
    assert len(names) >= 8
    loaded = loaded_after("\n".join(f"import {name}" for name in names))
    assert "numpy" in loaded
    assert not loaded & {"torch", "psycopg2", "modules", "graphcast_api", "xarray", "requests"}
