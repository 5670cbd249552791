# Keep the GraphCast API (127.0.0.1:8001) running on Windows: registers the scheduled task
# "GraphCast_API" that starts the service at boot, restarts it when it fails, and appends
# its output to logs\graphcast-api.log. The Windows counterpart of deploy/graphcast-api.service.
# Run once from an elevated PowerShell in the project folder (after scripts\demo.ps1 or
# scripts\setup_env.ps1 made .venv):   .\deploy\graphcast-api-task.ps1
# Remove:   Unregister-ScheduledTask -TaskName GraphCast_API -Confirm:$false
# The checkpoint and stats folder come from .env (GRAPHCAST_API_CHECKPOINT, GRAPHCAST_API_STATS_DIR).
$ErrorActionPreference = "Stop"
$root = Split-Path -Parent $PSScriptRoot
$python = Join-Path $root ".venv\Scripts\python.exe"
$log = Join-Path $root "logs\graphcast-api.log"
if (-not (Test-Path $python)) { throw "$python not found: run scripts\demo.ps1 first" }
$command = "`"$python`" -m graphcast_api serve >> `"$log`" 2>&1"
$action = New-ScheduledTaskAction -Execute "cmd.exe" -Argument "/c `"$command`"" -WorkingDirectory $root
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) -StartWhenAvailable
Register-ScheduledTask -TaskName "GraphCast_API" -Action $action -Trigger $trigger -Settings $settings `
    -User "SYSTEM" -RunLevel Highest -Force | Out-Null
Start-ScheduledTask -TaskName "GraphCast_API"
Write-Output "GraphCast_API task registered and started; log: $log"
