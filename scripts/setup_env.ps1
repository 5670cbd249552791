# Create .venv (if missing), install the requirement sets named as arguments, then the project
# itself in editable mode (Windows counterpart of setup_env.sh). Re-running is quick.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$python = if ($env:PYTHON) { $env:PYTHON } else { "python" }
if (-not (Test-Path ".venv\Scripts\python.exe")) {
    & $python -m venv .venv
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}
$requirements = foreach ($file in $args) { "-r"; $file }
& .venv\Scripts\python.exe -m pip install --quiet --disable-pip-version-check @requirements
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
& .venv\Scripts\python.exe -m pip install --quiet --disable-pip-version-check --no-deps --editable .
exit $LASTEXITCODE
