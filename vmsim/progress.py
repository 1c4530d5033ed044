"""Progress display for the command line: rich spinners and bars on stderr, only when
stderr is a terminal (never in pipes, files or tests), and nothing at all otherwise.

    with progress.bar("conform", total=len(files)) as bar:
        for f in files: ...; bar.advance(f)
    with progress.status("compiling the executor"):
        ...
"""
import contextlib
import os
import sys


def enabled() -> bool:
    if os.environ.get("VMSIM_NO_PROGRESS"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Null:
    def advance(self, what=None):
        pass

    def update(self, text):
        pass

    def stop(self):
        pass


class _Bar:
    def __init__(self, prog, task):
        self.prog, self.task = prog, task
        self._stopped = False

    def advance(self, what=None):
        self.prog.update(self.task, advance=1, **({"what": str(what)} if what is not None else {}))

    def update(self, text):
        self.prog.update(self.task, what=str(text))

    def stop(self):
        """Take the display off the terminal now (before printing a report)."""
        if not self._stopped:
            self._stopped = True
            self.prog.stop()


_active = []          # rich allows one live display: a nested step shows in the outer one


class _Nested(_Null):
    def __init__(self, outer, description):
        self.outer = outer
        outer.update(description)

    def update(self, text):
        self.outer.update(text)


@contextlib.contextmanager
def bar(description, total=None):
    """A progress bar over ``total`` items (a spinner with elapsed time if total is None)."""
    if not enabled():
        yield _Null()
        return
    if _active:
        n = _Nested(_active[-1], description)
        try:
            yield n
        finally:
            n.outer.update("")
        return
    try:
        from rich.console import Console
        from rich.progress import (Progress, SpinnerColumn, TextColumn, BarColumn,
                                   MofNCompleteColumn, TimeElapsedColumn)
    except ImportError:
        yield _Null()
        return
    cols = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        cols += [BarColumn(), MofNCompleteColumn()]
    cols += [TimeElapsedColumn(), TextColumn("{task.fields[what]}")]
    prog = Progress(*cols, console=Console(file=sys.stderr), transient=True,
                    redirect_stdout=True, redirect_stderr=False)
    task = prog.add_task(description, total=total, what="")
    b = _Bar(prog, task)
    prog.start()
    _active.append(b)
    try:
        yield b
    finally:
        _active.pop()
        b.stop()


def status(description):
    """A spinner for one step of unknown length (compiling, a long run)."""
    return bar(description, None)
