; Inno Setup 6.3+ script for the Windows installer of the tray app (x64compatible needs 6.3).
;
; Built by installer\windows\build.ps1, which builds the PyInstaller bundle first and passes the defines
; below. CI compiles it with the same ISCC (the npm registry's innosetup package) under Wine, over a
; stand-in folder of the bundle's layout, and installs and uninstalls it there (tests/installer/test_inno_wine.py).
;   ISCC.exe /DAppVersion=0.1.0 /DSourceDir=..\..\dist\cpu\insane-desktop installer\windows\insane.iss
; Per-user install by default (no administrator rights needed; the app only needs the user's own
; folders); an administrator may choose "for all users" on the first page.
; Signing: build.ps1 passes /DSign and /Sinsane="signtool.exe sign ... $f" when SIGN_CERT is set, and
; Setup and its uninstaller are signed as they are written.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef VersionNumbers
  #define VersionNumbers AppVersion
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\cpu\insane-desktop"
#endif
#ifndef FlavourSuffix
  #define FlavourSuffix ""
#endif
; The per-user default, {autopf}, is %LOCALAPPDATA%\Programs; Wine cannot expand it (its shell32 leaves
; FOLDERID_UserProgramFiles unimplemented), so the Wine test passes that folder here instead.
#ifndef DefaultDir
  #define DefaultDir "{autopf}\Insane AI Security"
#endif
#define AppName "Insane AI Security"
#define Publisher "Insane AI Security"
#define AppExe "insane-desktop.exe"
; desktop/autostart.py: RUN_KEY, RUN_VALUE, CHOICE_KEY, CHOICE_VALUE.
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"
#define RunValue "InsaneAISecurity"
#define ChoiceKey "Software\Insane AI Security"
#define ChoiceValue "StartAtLoginChoice"
; Where Setup records this installation (AppId below, with one brace, and _is1).
#define UninstallKey "{6E2B8C1D-4F3A-4B8E-9C7D-1A2B3C4D5E6F}_is1"

[Setup]
; A fixed AppId: upgrades replace the installed version instead of installing beside it.
AppId={{6E2B8C1D-4F3A-4B8E-9C7D-1A2B3C4D5E6F}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher={#Publisher}
AppPublisherURL=https://github.com/insane-ai-security
VersionInfoVersion={#VersionNumbers}
VersionInfoCompany={#Publisher}
VersionInfoDescription={#AppName} Setup
VersionInfoProductName={#AppName}
VersionInfoProductVersion={#VersionNumbers}
VersionInfoCopyright={#Publisher}, AGPL-3.0-or-later
DefaultDirName={#DefaultDir}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
; PySide6 6.x runs on Windows 10 and later, x64 only.
MinVersion=10.0
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
; The tray app creates these mutexes (desktop/appmutex.py): Setup and Uninstall see them and ask the user
; to quit it first. Qt's hidden tray window ignores the Restart Manager's close request, so without this
; Setup would replace the unlocked half of _internal and fail on the DLLs the running app holds.
AppMutex=InsaneAISecurityTray,Global\InsaneAISecurityTray
; Other programs holding the app's files (its console companion, say) still go through the Restart
; Manager; Python's extension modules (.pyd) are locked like DLLs.
CloseApplications=yes
CloseApplicationsFilter=*.exe,*.dll,*.pyd
RestartApplications=no
#ifdef Sign
SignTool=insane
SignedUninstaller=yes
#endif

[Messages]
UninstalledAll=%1 was removed from your computer.%n%nYour settings, the worker token and downloaded models were kept, so that a reinstall picks them up. The README's "Uninstalling" section says where they are and how to remove them.

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
; Per-user installs only: "for all users" runs elevated, where HKCU is the administrator's own hive, not
; the users'. There each user turns on "Start when I log in" in the app's Settings.
Name: "autostart"; Description: "Start {#AppName} when I sign in (the same switch as in the app's Settings)"; GroupDescription: "Startup:"; Check: not IsAdminInstallMode

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
; list2cmdline([exe, "tray"])), so that sign-in starts the app even before its first run.
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "{#RunValue}"; ValueData: """{app}\{#AppExe}"" tray"; Flags: uninsdeletevalue; Tasks: autostart; Check: not IsAdminInstallMode
; The answer for the app: at its next start it makes it the setting, saves it and removes this value
; (desktop/autostart.py: settle), so the setting no longer undoes what was ticked here.
Root: HKCU; Subkey: "{#ChoiceKey}"; ValueType: string; ValueName: "{#ChoiceValue}"; ValueData: "1"; Flags: uninsdeletekey; Tasks: autostart; Check: not IsAdminInstallMode
Root: HKCU; Subkey: "{#ChoiceKey}"; ValueType: string; ValueName: "{#ChoiceValue}"; ValueData: "0"; Flags: uninsdeletekey; Tasks: not autostart; Check: not IsAdminInstallMode

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
{ On an upgrade the box starts as the app's setting now is (its Run value), not as it was ticked last time. }
procedure CurPageChanged(CurPageID: Integer);
var
  Value: String;
begin
  if (CurPageID = wpSelectTasks) and not IsAdminInstallMode and
     (ExpandConstant('{param:TASKS|}') = '') and
     RegQueryStringValue(HKCU, 'Software\Microsoft\Windows\CurrentVersion\Uninstall\{#UninstallKey}',
                         'Inno Setup: App Path', Value) then
  begin
    if RegValueExists(HKCU, '{#RunKey}', '{#RunValue}') then
      WizardSelectTasks('autostart')
    else
      WizardSelectTasks('!autostart');
  end;
end;

{ The app writes the Run value itself when "Start when I log in" is turned on in Settings: remove it with
  the app, when it starts this installation (another installation's value is left alone). }
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  Value: String;
begin
  if (CurUninstallStep = usUninstall) and
     RegQueryStringValue(HKCU, '{#RunKey}', '{#RunValue}', Value) and
     (Pos(Lowercase(ExpandConstant('{app}\{#AppExe}')), Lowercase(Value)) > 0) then
  begin
    if RegDeleteValue(HKCU, '{#RunKey}', '{#RunValue}') then
      Log('Removed the Run value the app had written: ' + Value);
  end;
end;
