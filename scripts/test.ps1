# The whole test suite on Windows: environment, dependencies (test ones included), pytest.
#   scripts\test.ps1 --fast   all but the `slow` tests; other arguments go to pytest.
# The caller's folder and ENV_FILE are restored when it ends (a script's changes to both
# outlive it in the PowerShell window that ran it).
$ErrorActionPreference = "Stop"
Push-Location (Split-Path -Parent $PSScriptRoot)
$callersEnvFile = $env:ENV_FILE
try {
    & "$PSScriptRoot\setup_env.ps1" requirements.txt requirements-service.txt requirements-backfill.txt requirements-dev.txt
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    $pytestArgs = @($args)
    if ($pytestArgs.Count -gt 0 -and $pytestArgs[0] -eq "--fast") {
        $pytestArgs = @("-m", "not slow", "-n", "auto") + @($pytestArgs | Select-Object -Skip 1)
    }
    # Tests never read the working copy's .env, as in test.sh: ENV_FILE blank means no .env
    # file (a space, since PowerShell deletes a variable set to "").
    $env:ENV_FILE = " "
    & .venv\Scripts\python.exe -m pytest @pytestArgs
    exit $LASTEXITCODE
} finally {
    $env:ENV_FILE = $callersEnvFile
    Pop-Location
}
