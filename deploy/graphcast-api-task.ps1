# Keep the GraphCast API (127.0.0.1:8001) running on Windows: registers the scheduled task
# "GraphCast_API" that starts the service at boot and restarts it when it fails; the service
# logs to logs\graphcast-api.log, rotated by itself (5 MB x 5 files), and its warnings and
# errors of the last start to logs\graphcast-api.log.stderr. The Windows counterpart of
# deploy/graphcast-api.service.
# Run once from an elevated PowerShell in the project folder (after scripts\demo.ps1 or
# scripts\setup_env.ps1 made .venv):   .\deploy\graphcast-api-task.ps1 [-User .\graphcast]
# The task runs as -User (default: you) with limited rights, never as SYSTEM: whoever can
# write the project folder controls what the task runs, so that account must own it and
# no one else may write it. A dedicated local account (as the systemd unit's `graphcast`)
# is best. The task logs on as S4U: no password stored, no network shares (not needed).
# Remove:   Unregister-ScheduledTask -TaskName GraphCast_API -Confirm:$false
# The checkpoint and stats folder come from .env (GRAPHCAST_API_CHECKPOINT, GRAPHCAST_API_STATS_DIR).
param(
    [string]$User = "$env:USERDOMAIN\$env:USERNAME"
)
$ErrorActionPreference = "Stop"
if ($User -match '^(NT AUTHORITY\\)?(SYSTEM|LOCAL ?SYSTEM|LOCAL ?SERVICE|NETWORK ?SERVICE)$') {
    throw "refusing to run the service as $User: pass -User with an ordinary account"
}
$root = Split-Path -Parent $PSScriptRoot
$python = Join-Path $root ".venv\Scripts\python.exe"
$log = Join-Path $root "logs\graphcast-api.log"
if (-not (Test-Path $python)) { throw "$python not found: run scripts\demo.ps1 first" }
$command = "`"$python`" -m graphcast_api serve --log-file `"$log`" 2> `"$log.stderr`""
$action = New-ScheduledTaskAction -Execute "cmd.exe" -Argument "/c `"$command`"" -WorkingDirectory $root
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) -StartWhenAvailable
$principal = New-ScheduledTaskPrincipal -UserId $User -LogonType S4U -RunLevel Limited
Register-ScheduledTask -TaskName "GraphCast_API" -Action $action -Trigger $trigger -Settings $settings `
    -Principal $principal -Force | Out-Null
Start-ScheduledTask -TaskName "GraphCast_API"
Write-Output "GraphCast_API task registered for $User (limited rights) and started; log: $log"
