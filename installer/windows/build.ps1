# Build the Windows installer: dist\insane-desktop-<version>-windows-x64[-gpu]-setup.exe.
#
# Built on Windows only (PyInstaller does not cross-compile; Inno Setup's ISCC.exe is a Windows tool).
# It is not built or run by this project's CI, which is Linux. Same structure as installer/linux/build.sh:
#
#   powershell -File installer\windows\build.ps1                      a fresh build venv in build\venv-cpu
#   $env:BUILD_VENV="C:\path\venv"; powershell -File ...\build.ps1      use that venv as it is
#   $env:FLAVOUR="gpu"                                                  onnxruntime-directml (any DirectX 12 GPU)
#   $env:FLAVOUR="cuda"                                                 onnxruntime-gpu (NVIDIA, CUDA 12 + cuDNN 9
#                                                                       installed on the user's machine)
# Needs Python 3.11 (py launcher) and Inno Setup 6 (ISCC.exe on PATH or in its default folder).
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

$flavour = if ($env:FLAVOUR) { $env:FLAVOUR } else { "cpu" }
$runtime = @{ cpu = "onnxruntime>=1.18"; gpu = "onnxruntime-directml>=1.18"; cuda = "onnxruntime-gpu>=1.18" }[$flavour]
if (-not $runtime) { throw "FLAVOUR must be cpu, gpu or cuda, not $flavour" }
$env:INSANE_BUNDLE_MAX_MB = if ($env:INSANE_BUNDLE_MAX_MB) { $env:INSANE_BUNDLE_MAX_MB } elseif ($flavour -eq "cpu") { "250" } else { "1500" }
$env:ORT_DISABLE_TELEMETRY = "1"
$env:QT_QPA_PLATFORM = "offscreen"

if ($env:BUILD_VENV) { $venv = $env:BUILD_VENV } else {
    $venv = "build\venv-$flavour"
    if (Test-Path $venv) { Remove-Item -Recurse -Force $venv }
    py -3.11 -m venv $venv
    & "$venv\Scripts\python.exe" -m pip install -q -U pip
    & "$venv\Scripts\pip.exe" install -q "pyinstaller>=6.10,<7" -e ".[desktop]"
    if ($flavour -ne "cpu") {
        # onnxruntime, -directml and -gpu install the same `onnxruntime` package: never two at once.
        & "$venv\Scripts\pip.exe" uninstall -q -y onnxruntime
        & "$venv\Scripts\pip.exe" install -q $runtime
    }
}
$py = "$venv\Scripts\python.exe"

# The icon: the app's own drawing, as a multi-size .ico.
& $py -c @"
from PySide6.QtGui import QGuiApplication, QIcon
from desktop.icons import draw_icon
app = QGuiApplication([])
draw_icon('running', 256).save('build/insane.ico')
"@
$env:INSANE_ICON = (Resolve-Path "build\insane.ico").Path

& "$venv\Scripts\pyinstaller.exe" --noconfirm --clean --log-level WARN --distpath "dist\$flavour" `
    --workpath "build\pyinstaller-$flavour" pyinstaller.spec
if ($LASTEXITCODE -ne 0) { throw "pyinstaller failed" }

# The tray app has no console: the self-test reports through its exit status.
$test = Start-Process -FilePath "dist\$flavour\insane-desktop\insane-desktop.exe" -ArgumentList "--self-test" `
    -Wait -PassThru -NoNewWindow
if ($test.ExitCode -ne 0) { throw "insane-desktop --self-test failed (exit $($test.ExitCode))" }

$version = & $py -c "import importlib.metadata as m; print(m.version('insane-ai-security'))"
$iscc = (Get-Command ISCC.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
$suffix = if ($flavour -eq "cpu") { "" } else { "-$flavour" }
& $iscc "/DAppVersion=$version" "/DSourceDir=..\..\dist\$flavour\insane-desktop" "/DFlavourSuffix=$suffix" `
    "/DIconFile=..\..\build\insane.ico" "installer\windows\insane.iss"
if ($LASTEXITCODE -ne 0) { throw "ISCC failed" }
Write-Host "windows/build.ps1: ok: dist\insane-desktop-$version-windows-x64$suffix-setup.exe"
