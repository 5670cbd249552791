# The whole test suite on Windows: environment, dependencies (test ones included), pytest.
#   scripts\test.ps1 --fast   all but the `slow` tests; other arguments go to pytest.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
& "$PSScriptRoot\setup_env.ps1" requirements.txt requirements-service.txt requirements-backfill.txt requirements-dev.txt
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$pytestArgs = @($args)
if ($pytestArgs.Count -gt 0 -and $pytestArgs[0] -eq "--fast") {
    $pytestArgs = @("-m", "not slow", "-n", "auto") + @($pytestArgs | Select-Object -Skip 1)
}
# Tests never read the working copy's .env, as in test.sh: ENV_FILE blank means no .env file
# (a space, since PowerShell deletes a variable set to "").
$env:ENV_FILE = " "
& .venv\Scripts\python.exe -m pytest @pytestArgs
exit $LASTEXITCODE
