; Inno Setup 6 script for the Windows installer of the tray app.
;
; Built on Windows only, by installer\windows\build.ps1 (which builds the PyInstaller bundle first and
; passes the defines below); not built or run by this project's CI, which is Linux.
;   ISCC.exe /DAppVersion=0.1.0 /DSourceDir=..\..\dist\cpu\insane-desktop installer\windows\insane.iss
; Per-user install by default (no administrator rights needed; the app only needs the user's own
; folders); an administrator may choose "for all users" on the first page.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\cpu\insane-desktop"
#endif
#ifndef FlavourSuffix
  #define FlavourSuffix ""
#endif
#define AppName "Insane AI Security"
#define AppExe "insane-desktop.exe"

[Setup]
; A fixed AppId: upgrades replace the installed version instead of installing beside it.
AppId={{6E2B8C1D-4F3A-4B8E-9C7D-1A2B3C4D5E6F}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Insane AI Security
AppPublisherURL=https://github.com/insane-ai-security
DefaultDirName={autopf}\Insane AI Security
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=insane-desktop-{#AppVersion}-windows-x64{#FlavourSuffix}-setup
#ifdef IconFile
SetupIconFile={#IconFile}
#endif
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
LicenseFile=..\..\LICENSE
; A running tray app holds its files open: ask it to close (Restart Manager) before replacing them.
CloseApplications=yes
RestartApplications=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "autostart"; Description: "Start {#AppName} when I sign in"; GroupDescription: "Startup:"

[InstallDelete]
; The bundle's folder is replaced whole on upgrade: no file of the old version lingers in _internal.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; The same value the app's own "Start at login" switch writes (desktop/autostart.py: RUN_VALUE and
; list2cmdline([exe, "tray"])), so the switch shows it as on and can turn it off.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; \
  ValueName: "InsaneAISecurity"; ValueData: """{app}\{#AppExe}"" tray"; Flags: uninsdeletevalue; Tasks: autostart

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Leave settings, the worker token (Windows Credential Manager) and downloaded models in place: a
; reinstall picks them up. The README says how to remove them.
