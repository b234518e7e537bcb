# The README's commands for PowerShell users: build, run the tests, run the demo.
# Usage: ./build.ps1 [-Configuration Release] [-SkipTests] [-Demo]
param(
    [string]$Configuration = "Release",
    [switch]$SkipTests,
    [switch]$Demo
)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot

function Invoke-Step([string]$Command, [string[]]$Arguments) {
    & $Command @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Command $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

Invoke-Step dotnet @("build", "Saber.Native.sln", "-c", $Configuration)
if (-not $SkipTests) { Invoke-Step dotnet @("test", "Saber.Native.sln", "-c", $Configuration) }
if ($Demo) { Invoke-Step dotnet @("run", "--project", "src/Saber.Cli", "-c", $Configuration, "--", "demo") }
