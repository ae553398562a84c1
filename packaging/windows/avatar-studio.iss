; Inno Setup script for the Windows installer of Avatar Studio — a RECIPE: it has never been built or
; tested (the project's machines run Linux). It packs the one-folder bundle that the same spec makes
; on Windows:
;   1. On Windows with Python 3.11 (x64):  py -3.11 -m venv %LOCALAPPDATA%\avatar-studio-build
;      %LOCALAPPDATA%\avatar-studio-build\Scripts\pip install torch==2.13.0 (the CPU build, from the PyTorch CPU wheel index)
;      then the dependencies listed in pyproject.toml and "pyinstaller>=6.10,<7"
;   2. From the repository:  ...\Scripts\pyinstaller --noconfirm packaging\avatar-studio.spec
;      (gives dist\avatar-studio\avatar-studio.exe)
;   3. ISCC.exe packaging\windows\avatar-studio.iss   (gives dist\avatar-studio-setup.exe)
; Things to check on a real Windows build: the ffmpeg binary that imageio_ffmpeg ships for Windows is
; collected by the spec (binaries/ffmpeg*.exe), Qt's "windows" platform plugin, and mediapipe's files.

#define AppName "Avatar Studio"
#define AppVersion "0.1.0"
#define SourceDir "..\..\dist\avatar-studio"

[Setup]
AppId={{6C1F3E0A-5B7D-4E0F-9A51-7A1E2B3C4D5E}
AppName={#AppName}
AppVersion={#AppVersion}
DefaultDirName={localappdata}\Programs\Avatar Studio
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
OutputDir=..\..\dist
OutputBaseFilename=avatar-studio-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\avatar-studio.exe

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\avatar-studio.exe"; Parameters: "gui"
Name: "{userdesktop}\{#AppName}"; Filename: "{app}\avatar-studio.exe"; Parameters: "gui"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\avatar-studio.exe"; Parameters: "gui"; Description: "Start {#AppName}"; Flags: nowait postinstall skipifsilent
