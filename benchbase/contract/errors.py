"""The errors of benchbase, by what the user (or the runner) does about them.

Control flow never reads error messages: it catches these classes.

- `PluginError` and its subclasses are errors a user can act on. The CLI prints them as one line
  and exits with code 2; a run that raises one is recorded failed with the message alone.
- Any other exception raised by a plugin is a bug in that plugin: the run is recorded failed with
  the exception's type, message and traceback, and the grid goes on.
"""

from __future__ import annotations


class PluginError(Exception):
    """An error a user can act on: printed as one clear message, never as a traceback."""


class GridError(PluginError):
    """A grid file or a command-line value is malformed: names the file, the key and what is allowed."""


class DataUnavailable(PluginError):
    """A dataset's files are not on this machine and cannot be fetched: says where they were looked
    for and how to obtain them. The grid skips such a dataset's runs with this message."""


class DuplicateName(PluginError):
    """Two plugins registered the same name for the same kind."""


class StageFailed(PluginError):
    """A run's pretraining stage failed, so the run cannot start; carries the stage's error."""


class StoreError(PluginError):
    """The results store cannot be used (a newer schema, a damaged file)."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: the run is recorded as failed with this message."""


class WorkerDied(RuntimeError):
    """The process running a job died (killed, out of memory) before returning its result."""


class DependencyFailed(RuntimeError):
    """A job did not run because a job it waited for failed (reported by engines that order jobs
    themselves); `dependency` is that job's key, `error` its exception."""

    def __init__(self, dependency: str, error: BaseException) -> None:
        super().__init__(f"{dependency} failed: {error}")
        self.dependency, self.error = dependency, error
