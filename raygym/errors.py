"""User-facing errors: one line naming the file, the key or value, and the fix.

Exit codes: 2 for bad input (:class:`RaygymError` and its input kinds), 1 for a run that
failed on good input (:class:`RunFailedError`), 130 for Ctrl-C (the CLI)."""

from __future__ import annotations

from pathlib import Path

EXIT_USAGE = 2
EXIT_RUN_FAILED = 1
EXIT_INTERRUPTED = 130


class RaygymError(Exception):
    """An error the user can fix. The CLI prints `str(err)` on one line and exits with 2."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.key = key
        self.fix = fix
        super().__init__(self.format())

    def in_file(self, file: str | Path) -> RaygymError:
        """This error, naming ``file`` where it names none (a key of that file refused deep in
        a run, e.g. ``resources`` that do not fit the cluster); returns ``self``."""
        if self.file is None:
            self.file = str(file)
            self.args = (self.format(),)
        return self

    def format(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        head = ": ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split("\n"))


class ConfigError(RaygymError):
    """The experiment YAML is invalid."""


class DataError(RaygymError):
    """Input imagery or labels are unusable (missing, unpaired, unreadable, bad values)."""


class ResourceError(RaygymError):
    """The requested resources cannot be satisfied by the Ray cluster."""


class RunFailedError(RaygymError):
    """The input was good but the run failed (training diverged or crashed, every trial of a
    search failed): exit code 1."""

    exit_code = EXIT_RUN_FAILED
