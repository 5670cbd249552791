# The whole test suite on Windows: environment, dependencies (test ones included), pytest.
# Extra arguments go to pytest (e.g. scripts\test.ps1 -k ingest).
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
& "$PSScriptRoot\setup_env.ps1" requirements.txt graphcast_api\requirements.txt requirements-dev.txt
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
& .venv\Scripts\python.exe -m pytest @args
exit $LASTEXITCODE
