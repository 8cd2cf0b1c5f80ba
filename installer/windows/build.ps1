# Build the Windows installer: dist\insane-desktop-<version>-windows-x64[-gpu|-cuda]-setup.exe.
#
# Built on Windows only (PyInstaller does not cross-compile). Windows' default execution policy blocks
# `powershell -File` of an unsigned script, so run it with -ExecutionPolicy Bypass (this run only):
#
#   powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1          a fresh build venv in build\venv-cpu
#   $env:BUILD_VENV="C:\path\venv"; powershell -ExecutionPolicy Bypass -File ...   use that venv as it is
#   $env:FLAVOUR="gpu"                                   onnxruntime-directml (any DirectX 12 GPU)
#   $env:FLAVOUR="cuda"                                  onnxruntime-gpu, built for CUDA 12: the user's PC needs the
#                                                        CUDA 12 runtime and cuDNN 9 for CUDA 12 (not carried)
#   $env:SIGN_CERT="C:\path\cert.pfx"; $env:SIGN_PASSWORD="..."   sign the executables, Setup and its uninstaller
#   $env:SIGN_THUMBPRINT="..."                           ...or with a certificate from the user's store
#   $env:SIGN_TIMESTAMP_URL="http://..."                 RFC 3161 timestamp server (default: DigiCert's)
#
# Needs Python 3.11 (the py launcher), Inno Setup 6.3 or later (ISCC.exe on PATH or in its default folder),
# and for signing signtool.exe (Windows SDK) on PATH or in the Windows Kits folder.
# The versions installed are those of installer\linux\constraints.txt, the same pins as the Linux build.
# Not run by CI (Linux): CI compiles insane.iss with the same ISCC under Wine and installs it there.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

# $ErrorActionPreference does not cover native programs: each one's exit code is checked here.
function Invoke-Native {
    param([Parameter(Mandatory)][string]$Program, [Parameter(ValueFromRemainingArguments)][string[]]$Arguments)
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Program $($Arguments -join ' ') failed (exit $LASTEXITCODE)" }
}

$flavour = if ($env:FLAVOUR) { $env:FLAVOUR } else { "cpu" }
$runtime = @{ cpu = "onnxruntime"; gpu = "onnxruntime-directml"; cuda = "onnxruntime-gpu" }[$flavour]
if (-not $runtime) { throw "FLAVOUR must be cpu, gpu or cuda, not $flavour" }
$env:INSANE_BUNDLE_MAX_MB = if ($env:INSANE_BUNDLE_MAX_MB) { $env:INSANE_BUNDLE_MAX_MB } elseif ($flavour -eq "cpu") { "250" } else { "1500" }
$env:ORT_DISABLE_TELEMETRY = "1"
$env:QT_QPA_PLATFORM = "offscreen"
New-Item -ItemType Directory -Force -Path "build" | Out-Null

# Inno Setup: 6.3 or later (ArchitecturesAllowed=x64compatible is 6.3's).
$iscc = (Get-Command ISCC.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $iscc)) { throw "Inno Setup 6.3 or later is needed: ISCC.exe is not on PATH nor in $iscc" }
$isccVersion = [version](Get-Item $iscc).VersionInfo.ProductVersion.Split(" ")[0]
if ($isccVersion -lt [version]"6.3") { throw "Inno Setup $isccVersion is too old: 6.3 or later is needed ($iscc)" }

# Signing: signtool from PATH or the newest Windows SDK.
$signArgs = $null
if ($env:SIGN_CERT -or $env:SIGN_THUMBPRINT) {
    $signtool = (Get-Command signtool.exe -ErrorAction SilentlyContinue).Source
    if (-not $signtool) {
        $signtool = Get-ChildItem "${env:ProgramFiles(x86)}\Windows Kits\10\bin\*\x64\signtool.exe" -ErrorAction SilentlyContinue |
            Sort-Object FullName | Select-Object -Last 1 -ExpandProperty FullName
    }
    if (-not $signtool) { throw "SIGN_CERT or SIGN_THUMBPRINT is set, but signtool.exe was not found (Windows SDK)" }
    $timestamp = if ($env:SIGN_TIMESTAMP_URL) { $env:SIGN_TIMESTAMP_URL } else { "http://timestamp.digicert.com" }
    $signArgs = @("sign", "/fd", "sha256", "/tr", $timestamp, "/td", "sha256", "/d", "Insane AI Security")
    if ($env:SIGN_CERT) { $signArgs += @("/f", $env:SIGN_CERT); if ($env:SIGN_PASSWORD) { $signArgs += @("/p", $env:SIGN_PASSWORD) } }
    else { $signArgs += @("/sha1", $env:SIGN_THUMBPRINT) }
}

if ($env:BUILD_VENV) { $venv = $env:BUILD_VENV } else {
    $venv = "build\venv-$flavour"
    if (Test-Path $venv) { Remove-Item -Recurse -Force $venv }
    Invoke-Native py -3.11 -m venv $venv
    Invoke-Native "$venv\Scripts\python.exe" -m pip install -q -U pip
    # Pinned: a new Qt or onnxruntime comes in on purpose (installer\wheels.py checks every pin has a wheel).
    Invoke-Native "$venv\Scripts\python.exe" -m pip install -q -c installer\linux\constraints.txt `
        "pyinstaller>=6.10,<7" -e ".[desktop]"
    if ($flavour -ne "cpu") {
        # onnxruntime, -directml and -gpu install the same `onnxruntime` package: never two at once.
        Invoke-Native "$venv\Scripts\python.exe" -m pip uninstall -q -y onnxruntime
        Invoke-Native "$venv\Scripts\python.exe" -m pip install -q -c installer\linux\constraints.txt $runtime
    }
}
$py = "$venv\Scripts\python.exe"

# The icon: the app's own drawing at every size Windows asks for (16 to 256 px).
Invoke-Native $py installer\ico.py build\insane.ico
$env:INSANE_ICON = (Resolve-Path "build\insane.ico").Path

Invoke-Native "$venv\Scripts\pyinstaller.exe" --noconfirm --clean --log-level WARN --distpath "dist\$flavour" `
    --workpath "build\pyinstaller-$flavour" pyinstaller.spec
$bundle = "dist\$flavour\insane-desktop"

if ($signArgs) {
    foreach ($exe in @("$bundle\insane-desktop.exe", "$bundle\insane-desktop-cli.exe")) {
        Invoke-Native $signtool @signArgs $exe
        Invoke-Native $signtool verify /pa $exe
    }
}

# The self-test, from the console companion (the windowed app has no stdout), with a time limit: a hung
# Qt or onnxruntime must not hang an unattended build.
$test = Start-Process -FilePath "$bundle\insane-desktop-cli.exe" -ArgumentList "--self-test" -NoNewWindow -PassThru
$null = $test.Handle  # keeps the exit code readable after the process ends
if (-not $test.WaitForExit(300000)) {
    Stop-Process -Id $test.Id -Force
    throw "insane-desktop-cli --self-test did not finish in 300 s"
}
if ($test.ExitCode -ne 0) { throw "insane-desktop-cli --self-test failed (exit $($test.ExitCode))" }

$version = & $py -c "import sys; sys.path.insert(0, 'installer'); import specinfo; print(specinfo.project_version())"
if ($LASTEXITCODE -ne 0) { throw "could not read the version" }
$numbers = & $py -c "import sys; sys.path.insert(0, 'installer'); import specinfo; print('.'.join(map(str, specinfo.version_tuple(specinfo.project_version()))))"
if ($LASTEXITCODE -ne 0) { throw "could not read the version" }
$suffix = if ($flavour -eq "cpu") { "" } else { "-$flavour" }
$isccArgs = @("/DAppVersion=$version", "/DVersionNumbers=$numbers", "/DSourceDir=..\..\$bundle",
    "/DFlavourSuffix=$suffix", "/DIconFile=..\..\build\insane.ico")
if ($signArgs) {
    # ISCC runs this for Setup and its uninstaller; $f is the file, $q a quote.
    $quoted = ($signArgs | ForEach-Object { if ($_ -match " ") { "`$q$_`$q" } else { $_ } }) -join " "
    $isccArgs += @("/DSign", "/Sinsane=`$q$signtool`$q $quoted `$f")
}
Invoke-Native $iscc @isccArgs "installer\windows\insane.iss"
$setup = "dist\insane-desktop-$version-windows-x64$suffix-setup.exe"
if ($signArgs) { Invoke-Native $signtool verify /pa $setup }
Write-Host "windows/build.ps1: ok: $setup"
