"""The child process that reads, classifies and packs a large file for a PostgreSQL import.

Files of ``PARSE_PROCESS_MIN_BYTES`` or more are parsed by a child interpreter a couple
of batches ahead, so parsing and the database use both cores instead of sharing one GIL;
the importing process then only talks to PostgreSQL. The child is a plain interpreter,
not a multiprocessing "spawn" child: that would re-run the parent's ``__main__`` (a
script without a main guard, or a whole CLI) first.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

from billing_pipeline.ingest import files
from billing_pipeline.ingest.batches import BatchReader, PackedBatch, pack
from billing_pipeline.ingest.classify import Classifier
from billing_pipeline.ingest.files import EventFileError, EventFormat

#: Files smaller than this (bytes on disk; gzip counted x5) are parsed in-process: the
#: child's start-up (~0.7 s of imports) would eat what it saves.
PARSE_PROCESS_MIN_BYTES = 32 << 20

_CHILD_CODE = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from billing_pipeline.ingest.parse_process import child_main; child_main()"
)


class ParserProcessError(RuntimeError):
    """The child process reading the event file failed or died; batches the import
    committed before stay committed (re-running the import completes it)."""


def worth_a_process(path: Path | str) -> bool:
    if str(path) == "-" or not sys.executable:
        return False
    try:
        size = Path(path).stat().st_size
    except OSError:
        return False
    if str(path).lower().endswith(".gz"):
        size *= 5
    return size >= PARSE_PROCESS_MIN_BYTES


def parse_worker(conn, path: str, fmt: EventFormat | None, options: dict, batch_size: int) -> None:
    """The child: read and classify ``path``, send ``("batch", PackedBatch)`` per batch,
    then ``("done", None)``; ``("file_error", message)`` if the file cannot be read,
    ``("error", traceback)`` on anything else."""
    try:
        with files.open_event_file(path) as stream:
            reader = BatchReader(stream, fmt, Classifier(**options), batch_size, path)
            reader.read_header()
            for batch in reader:
                conn.send(("batch", pack(batch)))
        conn.send(("done", None))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone or gave up
    except EventFileError as exc:
        _send_last(conn, ("file_error", str(exc)))
    except BaseException:
        _send_last(conn, ("error", traceback.format_exc()))
    finally:
        conn.close()


def _send_last(conn, message) -> None:
    try:
        conn.send(message)
    except OSError:
        pass


def child_main() -> None:
    target, fd, args = pickle.load(sys.stdin.buffer)
    target(multiprocessing.connection.Connection(fd, readable=False), *args)


class ParserProcess:
    """Runs ``parse_worker`` in a child interpreter and yields its ``PackedBatch`` es.

    A receiver thread keeps up to ``depth`` batches ready, so the child parses ahead while
    this process is in the database; the pipe and the queue bound what is in flight."""

    def __init__(
        self, path: Path | str, fmt: EventFormat | None, options: dict, batch_size: int, depth: int = 2
    ) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE], stdin=subprocess.PIPE, pass_fds=(write_fd,)
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._conn = multiprocessing.connection.Connection(read_fd, writable=False)
        try:
            with self._process.stdin as stdin:
                pickle.dump(sys.path, stdin)
                pickle.dump((parse_worker, write_fd, (str(path), fmt, options, batch_size)), stdin)
        except BaseException:
            self._process.kill()
            self._process.wait()
            self._conn.close()
            raise
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="ingest-receiver", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                message = ("died", None)
            except BaseException as exc:  # e.g. a message that does not unpickle
                message = ("error", f"{type(exc).__name__}: {exc}")
            while True:
                try:
                    self._queue.put(message, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        return
            if message[0] != "batch":
                return

    def __iter__(self) -> Iterator[PackedBatch]:
        while True:
            kind, value = self._queue.get()
            if kind == "batch":
                yield value
            elif kind == "done":
                return
            elif kind == "file_error":
                raise EventFileError(value)
            elif kind == "error":
                raise ParserProcessError(f"the ingest parser process failed:\n{value}")
            else:
                try:
                    code = self._process.wait(5)
                except subprocess.TimeoutExpired:
                    code = None
                raise ParserProcessError(
                    f"the ingest parser process died (exit code {code}) before the end of the file"
                )

    def close(self) -> None:
        self._stop.set()
        try:
            self._process.wait(0.5)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._thread.join(5)
        self._conn.close()
