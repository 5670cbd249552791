# The quick start on Windows: environment, dependencies, then one forecast cycle end to end
# (scripts\demo.py). Options go to the demo: --offline, --live, --port N, --base-url URL.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
& "$PSScriptRoot\setup_env.ps1" requirements.txt requirements-service.txt
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
& .venv\Scripts\python.exe scripts\demo.py @args
exit $LASTEXITCODE
