"""How the CLI fails: one line on stderr and an exit code that says what went wrong."""

from __future__ import annotations

import shlex
from enum import IntEnum

from ml_worker.cli.output import printable
from ml_worker.exceptions import (
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    first_line,
    kind_of_remote,
)


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a task failed, or did not do what was asked
    USAGE = 2  # bad arguments or configuration
    UNREACHABLE = 3  # a service is down or refuses us
    NOT_FOUND = 4  # unknown project or task
    FORBIDDEN = 5  # the task's user is not granted the project
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CLIError(Exception):
    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE):
        super().__init__(message)
        self.code = code


_KIND_CODES = {
    NotFound: ExitCode.NOT_FOUND,
    InvalidInput: ExitCode.USAGE,
    Unavailable: ExitCode.UNREACHABLE,
    Forbidden: ExitCode.FORBIDDEN,
}


def remote_error_code(error_name: str) -> ExitCode:
    """The exit code of an error raised in a worker, which reaches us by name."""
    if error_name == "ValidationError":  # pydantic's, on a task's arguments
        return ExitCode.USAGE
    kind = kind_of_remote(error_name)
    return _KIND_CODES[kind] if kind is not None else ExitCode.FAILURE


def next_step(error_name: str, task_args: dict) -> str | None:
    """The command to run after a worker's error, in the CLI's words."""
    project = shlex.quote(str(task_args.get("project", "PROJECT")))
    steps = {
        "ProjectNotVectorized": f"`ml-worker vectorize {project}`",
        "DocumentNotVectorized": f"`ml-worker vectorize {project}`",
        "ModelMismatch": f"`ml-worker vectorize {project} --rebuild --model MODEL`",
        "UnknownProject": "`ml-worker status` to check the Elasticsearch address",
        "TableBusy": "the same command again in a minute",
    }
    return steps.get(error_name)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of an error raised in this process."""
    # Imported here: the CLI's help and usage errors must not wait for these.
    from elasticsearch import ConnectionError as ESConnectionError
    from pydantic import ValidationError

    if isinstance(error, CLIError):
        return error.code
    for kind, code in _KIND_CODES.items():
        if isinstance(error, kind):
            return code
    if isinstance(error, ESConnectionError):
        return ExitCode.UNREACHABLE
    if isinstance(error, ValidationError):
        return ExitCode.USAGE
    return ExitCode.FAILURE


def one_line(error: BaseException, *, hint: bool = False) -> str:
    """What went wrong, in one printable line (errors quote servers' answers and
    documents); with ``hint``, says when ``--debug`` tells more."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in error.errors()
        )
        return printable(f"invalid {error.title} settings: {problems}")
    more = (
        " (more with --debug)"
        if hint and len(str(error).strip().splitlines()) > 1
        else ""
    )
    return printable(first_line(error)) + more
