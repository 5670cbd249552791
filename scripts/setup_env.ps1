# Create .venv (if missing or without pip), install the requirement sets named as arguments, then the project
# itself in editable mode (Windows counterpart of setup_env.sh). Re-running is quick.
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent $PSScriptRoot)
$python = if ($env:PYTHON) { $env:PYTHON } else { "python" }
# A .venv left without pip by an earlier failed run is made anew (--clear), as in setup_env.sh.
$hasPip = $false
if (Test-Path ".venv\Scripts\python.exe") {
    $ErrorActionPreference = "Continue"  # pip's absence writes to stderr: not an error here
    & .venv\Scripts\python.exe -m pip --version *> $null
    $hasPip = $LASTEXITCODE -eq 0
    $ErrorActionPreference = "Stop"
}
if (-not $hasPip) {
    & $python -m venv --clear .venv
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}
$requirements = foreach ($file in $args) { "-r"; $file }
& .venv\Scripts\python.exe -m pip install --quiet --disable-pip-version-check @requirements
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
& .venv\Scripts\python.exe -m pip install --quiet --disable-pip-version-check --no-deps --editable .
exit $LASTEXITCODE
