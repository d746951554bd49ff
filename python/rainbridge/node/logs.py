"""The node's log: text or JSON lines, to stderr or to a rotated file.

:func:`setup_logging` is called once by ``rainbridge node start`` with the node's settings
(``log_format``, ``log_level``, ``log_file``, ``log_max_bytes``, ``log_backups``):

* ``text``: ``TIME LOGGER MESSAGE``, one line per record, for a person reading it;
* ``json``: one object per line for a log shipper: ``time`` (ISO 8601, UTC, milliseconds),
  ``level``, ``logger``, ``message``, and the structured fields a call passed with
  ``extra=`` (:data:`FIELDS`: ``job_id``, ``component``, ``parties``, ``peer``,
  ``status``, ``duration_s``, ``reason``, …), and ``exception`` with its traceback.

Messages name jobs, peers and services, never a value of the data or a person's ID (the
services keep those out of what they log; a test checks a real job's log).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import math
import sys
from pathlib import Path
from typing import Any

from rainbridge.errors import ConfigError

#: the structured fields a record may carry (``log.info(..., extra={...})``) that the
#: JSON format writes as keys of their own
FIELDS = (
    "job_id",
    "component",
    "parties",
    "peer",
    "status",
    "duration_s",
    "reason",
    "service",
    "request",
    "kind",
    "outcome",
    "workers",
)
#: the text format
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"
#: what the handler this module installs is known by, so that a second call replaces it
_MARK = "_rainbridge_node_log"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        at = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            if key in record.__dict__:
                v = record.__dict__[key]
                # NaN and infinities are not JSON: written as strings ("nan", "inf")
                out[key] = str(v) if isinstance(v, float) and not math.isfinite(v) else v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        # default=str: a field of an odd type (a Path, a set) still makes a valid line
        text = json.dumps(out, default=str, ensure_ascii=False)
        # a string undecodable as UTF-8 (a file name's bytes, held as lone surrogates) is
        # written as JSON escapes: the line stays valid UTF-8 and valid JSON
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """The standard handler, except that with no backups kept the file is emptied when it
    reaches its size (the standard one then reopens it at every record and lets it grow
    without bound)."""

    def doRollover(self) -> None:
        super().doRollover()
        if self.backupCount == 0 and self.stream is not None:
            self.stream.truncate(0)


def make_handler(
    log_file: str = "",
    *,
    directory: Path | None = None,
    max_bytes: int = 50 << 20,
    backups: int = 5,
) -> logging.Handler:
    """stderr, or ``log_file`` (relative to ``directory``) rotated at ``max_bytes`` keeping
    ``backups`` old files (``backups`` 0: the file is emptied; ``max_bytes`` 0: never
    rotated).

    Raises
    ------
    ConfigError
        The file cannot be opened for appending (no such folder, no permission).
    """
    if not log_file:
        return logging.StreamHandler(sys.stderr)
    path = Path(log_file)
    if not path.is_absolute() and directory is not None:
        path = directory / path
    try:
        return _RotatingFile(
            path,
            maxBytes=max_bytes,
            backupCount=backups,
            encoding="utf-8",
            # a message with bytes that are not UTF-8 is still written (escaped), not dropped
            errors="backslashreplace",
        )
    except OSError as exc:
        raise ConfigError(
            f"log_file {log_file!r}: cannot append to it: {exc.strerror or exc} "
            f"(set log_file to a writable file, or leave it empty for stderr)"
        ) from None


def setup_logging(
    log_format: str = "text",
    log_level: str = "info",
    log_file: str = "",
    *,
    directory: Path | None = None,
    max_bytes: int = 50 << 20,
    backups: int = 5,
) -> logging.Handler:
    """Send the root logger's records to one handler in ``log_format`` at ``log_level``.

    A handler installed by an earlier call is closed and replaced; other handlers (a test's
    capture) are left alone. Returns the handler.

    Raises
    ------
    ConfigError
        An unknown format or level, or a log file that cannot be opened.
    """
    if log_format not in ("text", "json"):
        raise ConfigError(f"log_format {log_format!r}: expected text or json")
    level = logging.getLevelNamesMapping().get(log_level.upper())
    if level is None or log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level {log_level!r}: expected debug, info, warning or error")
    handler = make_handler(log_file, directory=directory, max_bytes=max_bytes, backups=backups)
    text = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
