"""Packaging and command lines: metadata from the requirement files, the customer's `config`
package unshadowed, and every job-side program answering --help."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import config
from graphcast_contract.project import PROJECT_ROOT, VERSION

DISTRIBUTION = "graphcast-pipeline"
REQUIREMENT_FILES = {None: "requirements.txt", "service": "requirements-service.txt",
                     "backfill": "requirements-backfill.txt", "dev": "requirements-dev.txt"}


def requirements(name: str) -> list[Requirement]:
    """The requirements of one file, comments and blank lines left out."""
    lines = (line.split("#", 1)[0].strip() for line in (PROJECT_ROOT / name).read_text()
             .splitlines())
    return [Requirement(line) for line in lines if line]


def test_pyproject_takes_its_requirements_from_the_files() -> None:
    dynamic = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"] == {
        extra: {"file": [name]} for extra, name in REQUIREMENT_FILES.items() if extra}


def test_a_package_named_in_two_files_is_pinned_alike() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for name in REQUIREMENT_FILES.values():
        for requirement in requirements(name):
            key = requirement.name.lower()
            if key in seen:
                assert seen[key][0] == str(requirement.specifier), (name, seen[key][1])
            seen[key] = (str(requirement.specifier), name)


def test_installed_metadata_is_the_requirement_files() -> None:
    try:
        installed = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the project is not installed: run scripts/setup_env.sh (pip install -e .)")
    expected = {str(r) for r in requirements(REQUIREMENT_FILES[None])}
    for extra, name in REQUIREMENT_FILES.items():
        if extra:
            expected |= {f'{r}; extra == "{extra}"' for r in requirements(name)}
    assert set(installed) == expected
    assert importlib.metadata.version(DISTRIBUTION) == VERSION


def test_config_is_the_customers_package_and_nothing_else_provides_it() -> None:
    assert Path(config.__file__).resolve().parent == PROJECT_ROOT / "config"
    owners = importlib.metadata.packages_distributions().get("config", [])
    assert set(owners) <= {DISTRIBUTION}


JOB_PROGRAMS = [
    ["trigger_and_ingest_forecast.py"],
    ["-m", "modules.inputs"], ["-m", "modules.inputs", "load"],
    ["-m", "modules.inputs", "download"], ["-m", "modules.inputs", "status"],
    ["-m", "modules.era5_loader"], ["-m", "modules.era5_loader", "load"],
    ["-m", "modules.verification"], ["-m", "modules.query"],
    ["scripts/demo.py"],
    *[[str(p.relative_to(PROJECT_ROOT))] for p in sorted(PROJECT_ROOT.glob("benchmarks/*.py"))
      if '__name__ == "__main__"' in p.read_text()],  # not the helper module served.py
]


@pytest.mark.parametrize("command", JOB_PROGRAMS, ids=" ".join)
def test_every_program_answers_help(command: list[str]) -> None:
    done = subprocess.run([sys.executable, *command, "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


@pytest.mark.parametrize("script", ["graphcast-forecast", "graphcast-inputs", "graphcast-verify",
                                    "graphcast-query", "graphcast-api"])
def test_console_scripts_are_installed_and_answer_help(script: str) -> None:
    path = Path(sys.executable).parent / script
    assert path.exists(), f"{script} missing: run scripts/setup_env.sh"
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_the_loader_alias_still_takes_files_without_a_command(tmp_path: Path) -> None:
    missing = tmp_path / "absent.nc"
    done = subprocess.run([sys.executable, "-m", "modules.era5_loader", str(missing)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    assert f"{missing}: cannot read the file" in done.stderr
