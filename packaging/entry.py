"""Entry point of the frozen bundle (PyInstaller): the same `studio.cli:main` as the pip install.

`multiprocessing.freeze_support()` comes first: stage runs in the GUI use child processes, and a
frozen executable is its own Python, so a child must be told apart from a user's command line.
The macOS .app, started without arguments, opens the window (the Linux .desktop entry and the
Windows shortcut pass `gui`).

Hidden diagnostic: `avatar-studio --run-script FILE [ARG...]` runs a Python file with the bundle's own
interpreter and libraries (as `python FILE ARG...` would), so a check can exercise what the bundle
carries (torch, open_clip, the studio and models packages) without a Python install; `packaging/smoke.sh`
uses it to make a tiny CLIP file and a tiny trained avatar for the text-edit check.
"""
import multiprocessing
import os
import sys


def _run_script(args: list[str]) -> int:
    import runpy

    if not args:
        print("error: --run-script needs a Python file", file=sys.stderr)
        return 2
    path = os.path.abspath(args[0])
    if not os.path.isfile(path):
        print(f"error: --run-script: no such file: {args[0]}", file=sys.stderr)
        return 2
    sys.argv = [path, *args[1:]]
    sys.path.insert(0, os.path.dirname(path))   # as `python FILE` does: the script's folder first
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _main() -> int:
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    if args[:1] == ["--run-script"]:
        return _run_script(args[1:])
    if not args and sys.platform == "darwin":
        args = ["gui"]  # the .app was double-clicked: open the studio window
    os.environ.setdefault("AVATAR_STUDIO_FROZEN", "1")
    from studio.cli import main

    return main(args)


if __name__ == "__main__":
    sys.exit(_main())
