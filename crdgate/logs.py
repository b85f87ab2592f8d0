"""The process log: JSON lines or text on stderr, through a writer that never blocks.

Set up once by the command line (crdgate/cli.py) and again in each
``--workers`` child (crdgate/proxyworker.py), from the same ``LogConfig``. The
access log is the data plane's own (gateway/server.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass

from gateway import metrics
from gateway.logwriter import MAX_BUFFER, LogWriter, LogWriterHandler, stream_fd


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra={"crdgate_x": ...}`` fields appear as ``x``."""

    converter = time.gmtime  # the "Z" in every timestamp

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key.startswith("crdgate_"):
                entry[key[8:]] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The process log on stderr; the access log is the data plane's. Part of
    crdgate.config.Config; defined here so that a proxy worker, which never
    loads the controller (crdgate/proxyworker.py), can receive it."""

    format: str = "json"  # json | text, already resolved from auto
    level: str = "info"
    buffer_bytes: int = 4 << 20


def setup_logging(config: LogConfig) -> None:
    """The process log on stderr, through a bounded writer that never blocks (gateway/logwriter.py).

    A StreamHandler writes on the caller's thread: with a stalled log
    collector on stderr, a warning logged on the request path froze the event
    loop. The same writer as the access log's serves here (rather than a
    QueueHandler and a listener thread around a StreamHandler): one bounded
    buffer, one thread, drops counted in ``crdgate_log_dropped_total``. Lines
    are formatted on the caller's thread, so a record's arguments are read
    when it is logged.
    """

    def warn_dropped(lost: int) -> None:
        logging.getLogger("crdgate.log").warning(
            "%d log lines dropped because stderr was not read fast enough (crdgate_log_dropped_total)", lost)

    writer = LogWriter(stream_fd(sys.stderr, 2), "log", on_drops=warn_dropped,
                       max_buffer=config.buffer_bytes or MAX_BUFFER)
    metrics.LOG_DROPS.process = writer
    handler = LogWriterHandler(writer)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, LogWriterHandler):  # set up again (tests, a worker): the old writer flushes and stops
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, config.level.upper(), logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # watchfiles logs every batch ("3 changes detected") at info under its own name;
    # the manifests source logs what the changes did, under crdgate.*.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def resolve_log_format(fmt: str, stream=None) -> str:
    """``auto``: text for a person at a terminal, JSON lines for a log collector."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "json"
