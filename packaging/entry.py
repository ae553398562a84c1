"""Entry point of the frozen bundle (PyInstaller): the same `studio.cli:main` as the pip install.

`multiprocessing.freeze_support()` comes first: stage runs in the GUI use child processes, and a
frozen executable is its own Python, so a child must be told apart from a user's command line.
The macOS .app, started without arguments, opens the window (the Linux .desktop entry and the
Windows shortcut pass `gui`).
"""
import multiprocessing
import os
import sys


def _main() -> int:
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    if not args and sys.platform == "darwin":
        args = ["gui"]  # the .app was double-clicked: open the studio window
    os.environ.setdefault("AVATAR_STUDIO_FROZEN", "1")
    from studio.cli import main

    return main(args)


if __name__ == "__main__":
    sys.exit(_main())
