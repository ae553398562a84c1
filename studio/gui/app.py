"""Start the window: `studio.gui.app.main(argv)`, `python -m studio.gui [PROJECT]`, `avatar-studio gui`."""
from __future__ import annotations

import argparse
import os
import sys
import traceback


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-studio gui", description="Open the Avatar Studio window.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The window's command-line options, on `p` (this parser, and the CLI's `gui` command)."""
    p.add_argument("project", nargs="?", help="project folder to open (default: the last one)")
    p.add_argument("--new", metavar="VIDEO", help="start a new project from this video")
    p.add_argument("--fresh", action="store_true", help="do not reopen the last project")
    # smoke checks (hidden): show a page, grab the window into a PNG after N ms, quit
    p.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)
    p.add_argument("--quit-after-ms", type=int, default=1500, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--show", choices=("tracking", "viewer"), help=argparse.SUPPRESS)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), for the cold-start figure; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def open_initial(win, project: str | None, new: str | None, fresh: bool) -> None:
    """What the window shows first: the given project, a new one from a video, or the last one. A video given
    as the project (the desktop entry's "Open with Avatar Studio" on a video file) starts a new project."""
    from pathlib import Path

    from .dialogs import VIDEO_EXTENSIONS

    if project and Path(project).is_file() and Path(project).suffix.lower() in VIDEO_EXTENSIONS:
        new, project = project, None
    if project:
        win.open_project(project)
    elif new:
        win.new_project(video=os.path.abspath(new))
    elif not fresh and win.settings.last_project:
        win.open_project(win.settings.last_project)


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    """`argv` is parsed by `build_parser`; `args`, when given, is an already parsed namespace (the CLI's)."""
    if args is None:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .theme import apply_theme

    owns_process = QApplication.instance() is None  # not started from inside another Qt program or a test
    if owns_process:
        from .display_check import display_problem, tell_the_desktop

        problem = display_problem()  # Qt would abort with a line about "platform plugin xcb"
        if problem is not None:
            tell_the_desktop(problem)
            raise problem
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "avatar-studio"])
    app.setApplicationName("Avatar Studio")
    app.setOrganizationName("avatar-studio")
    apply_theme(app)
    from .main_window import MainWindow
    from .workers import Failure

    win = MainWindow()

    def excepthook(etype, value, tb):  # a bug in a slot: a dialog, not a crash
        traceback.print_exception(etype, value, tb)
        err = value.with_traceback(tb) if value is not None else etype()
        win.show_error("Unexpected error", Failure.from_exception(err))

    sys.excepthook = excepthook
    win.show()
    open_initial(win, args.project, args.new, args.fresh)
    if args.show:
        win.show_view(args.show)
    if args.screenshot:
        def shown():  # the first pass of the event loop: the window is on screen
            age = process_age_s()
            if age is not None:
                print(f"avatar-studio: window shown {age:.2f} s after the process started", file=sys.stderr,
                      flush=True)

        def grab():
            ok = win.grab().save(args.screenshot)
            print(f"avatar-studio: screenshot {'saved to' if ok else 'could NOT be saved to'} {args.screenshot}",
                  file=sys.stderr, flush=True)
            win.close()
            if not ok:
                app.exit(1)
        QTimer.singleShot(0, shown)
        QTimer.singleShot(max(0, args.quit_after_ms), grab)
    code = app.exec()
    from .. import speed_probe
    from .workers import wait_for_jobs

    speed_probe.cancel()  # the welcome page's probe stops at its next step instead of holding the exit
    wait_for_jobs()
    from . import workers

    if any(job.isRunning() for job in list(getattr(workers, "_JOBS", ()))):
        # a background job outlived the wait (a very loaded machine): Python's teardown would destroy its
        # QThread while it runs, which aborts the process. Every write is atomic, so end here instead.
        print("avatar-studio: background work was still running at exit; stopped it", file=sys.stderr, flush=True)
        sys.stdout.flush()
        if owns_process:
            os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
