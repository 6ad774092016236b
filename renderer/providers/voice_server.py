"""The voice process: one per user and installation on a machine, holding piper's models for every script
and worker of every batch there, loaded once, instead of a copy in each rendering process.

Why one per machine and not one per worker (measured: tests/benchmarks, P12, 3 narrated scripts at 720p): a
model is ~100 MB and a synthesis ~100 MB of working memory more, and every worker held its own. At
batch.n_jobs=3 the process tree peaked at 733 MB with one voice process against 1,003 MB with a model per
worker, whose own peak (190 MB) was that of n_jobs=1 (187 MB): three jobs cost one model. At n_jobs=1 the two
are even (445 vs 450 MB), and the orchestrator alone drops from 231-263 MB to 79-85 MB, flat in video length
(P6b). Wall time is the same within the noise of a shared machine (one sentence at a time over all the cores
is what each worker's model did anyway).

It lives while a script speaks through it, and no longer: a client holds it (a connection kept open, see
``VoiceClient.hold``) from its first sentence until its script's voice stage is over, and once nothing holds it
and nothing is being spoken it exits, so a script's encodes never run beside a model that has finished
speaking (P2: the tree's peak is the voice phase's or the encodes', not their sum). A worker that dies lets go
with its connection. A client that never holds (a status call) keeps it ``voice.server_idle_s``; the watcher
(``python -m renderer.watch``) holds it while it watches, so each save speaks on a loaded model. A run starts it
ahead of its first sentence (``VoiceClient.load``: started with ``--load``, it loads the model as soon as it
listens, held by nobody), so the model is loaded while the run starts rather than on the narration's path.

Client and server talk through ``multiprocessing.connection`` on an AF_UNIX socket in a per-user runtime dir
(``$XDG_RUNTIME_DIR/renderer``, else ``/tmp/renderer-<uid>``; mode 0700) with an authkey from a 0600 file
there. A request carries everything the sentence needs (model files, threads, speaker, length, pitch,
timeout): the server keeps the models it loaded by (onnx file, threads) and speaks each request exactly as an
in-process model does (``piper_model.Model.speak``), one at a time.

The first client that finds no server starts one, under a file lock (two workers start one server). It runs
detached, in a session of its own and outside the worker's process tree: a worker dying, or its pool killing
its tree, leaves it alone. A server that dies mid-request (killed, out of memory) is started again once by the
client and the sentence asked again; if that fails too, the provider fails as any voice failure does (the
fallback chain, recorded). A client that goes away (cancelled, killed) closes its connection: the server stops
that synthesis at its next sentence. The socket, lock, pid and log files are named per installation
(interpreter, package, protocol), so two checkouts or versions never talk to each other's server.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import AuthenticationError, Client, Connection, Listener
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from loguru import logger

from renderer.providers.piper_model import (
    Abandoned,
    Cast,
    Model,
    PiperError,
    PiperTimeout,
    loaded,
)

PROTOCOL = 2  # bump when a request or reply changes shape (2: a sentence says if it ends its clip)
START_TIMEOUT_S = 30.0  # a server started answers within this (Python, numpy; the model loads on a sentence)
WAIT_SLICE_S = 0.1  # a waiting client looks at cancellation this often
REPORT_GRACE_S = 1.0  # past its deadline a client waits this long for the server's own timeout report
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


# what connecting meets when no server listens: no socket, nobody behind it, or a server dying (killed) that
# its kernel still let in
NO_SERVER = (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, EOFError)


class ServerLost(ConnectionError):
    """The connection to the voice process broke: it died, or was exiting when asked."""


@dataclass(frozen=True)
class Place:
    """Where this installation's voice process lives."""

    dir: Path
    tag: str

    def file(self, suffix: str) -> Path:
        return self.dir / f"voice-{self.tag}.{suffix}"

    @property
    def socket(self) -> Path:
        return self.file("sock")

    @property
    def key(self) -> Path:
        return self.dir / "voice.key"


def runtime_dir() -> Path:
    """The user's runtime dir for the renderer, made 0700 (checked: a dir someone else made is refused)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "renderer" if base else Path(tempfile.gettempdir()) / f"renderer-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PiperError(f"{folder} is not a directory of this user's: remove it (the voice process keeps its "
                             "socket and key there)")
        if stat.S_IMODE(info.st_mode) != 0o700:
            folder.chmod(0o700)
    except OSError as exc:
        raise PiperError(f"cannot make the voice process's runtime dir {folder}: {exc} (set XDG_RUNTIME_DIR to a "
                         "directory of your own)") from exc
    return folder


def place() -> Place:
    ident = f"{PROTOCOL}|{sys.executable}|{Path(__file__).resolve().parents[1]}"
    where = Place(runtime_dir(), hashlib.sha256(ident.encode()).hexdigest()[:12])
    if len(os.fsencode(where.socket)) > MAX_SOCKET_PATH:
        raise PiperError(f"the voice process's socket path {where.socket} is longer than a Unix socket takes: set "
                         "XDG_RUNTIME_DIR to a shorter directory")
    return where


def authkey(where: Place) -> bytes:
    """The key both sides prove they hold: made once (32 random bytes, 0600), then read."""
    if not where.key.exists():
        part = where.dir / f".voice.key.{os.getpid()}"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, os.urandom(32))
        finally:
            os.close(fd)
        with suppress(FileExistsError):  # another process made it first: theirs stands
            os.link(part, where.key)
        part.unlink()
    info = where.key.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise PiperError(f"{where.key} must be a file of this user's, readable by no one else: remove it")
    return where.key.read_bytes()


@contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on ``path`` meanwhile (yields False when not ``blocking`` and it is held)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


# --- the client ---------------------------------------------------------------------------------------------
class VoiceClient:
    """What a piper provider speaks through: one connection per sentence, the server started when none answers."""

    def __init__(self, idle_s: float):
        self.idle_s = idle_s
        self._cancelled = threading.Event()
        self._hold: Connection | None = None
        self._holding = threading.Lock()

    def cancel(self) -> None:
        """Stop waiting: every sentence in flight closes its connection (the server stops speaking it)."""
        self._cancelled.set()
        self.release()

    def hold(self) -> None:
        """Keep the voice process (and its models) up until ``release()``: more sentences are coming. Best
        effort: a server that cannot be held still exits after ``idle_s`` with nothing to say."""
        with self._holding:
            if self._hold is not None:
                return
            try:
                conn = self._connect()
                conn.send({"op": "hold", "idle_s": self.idle_s})
            except (EOFError, OSError, PiperError) as exc:
                logger.debug("the voice process could not be held: {}", exc)
                return
            self._hold = conn

    def release(self) -> None:
        """Let the voice process go: it exits once nothing holds it and nothing is being spoken."""
        with self._holding:
            if self._hold is not None:
                with suppress(OSError):
                    self._hold.close()
                self._hold = None

    def speak(self, model: Model, text: str, cast: Cast, deadline: float, last: bool = True) -> np.ndarray:
        """``model.speak`` done by the voice process, started (again) as needed; see the module's docstring."""
        request = {"op": "speak", "onnx": str(model.onnx), "config": str(model.config_path),
                   "threads": model.threads, "text": text, "cast": cast, "last": last}
        self.hold()
        try:
            return self._ask(request, deadline)
        except ServerLost as exc:
            logger.warning("the voice process went away ({}): starting it again for this sentence", exc)
        self.release()  # held a server that is gone: hold its successor
        self.hold()
        try:
            return self._ask(request, deadline)
        except ServerLost as exc:
            raise PiperError(f"the voice process went away twice ({exc}); its log: {place().file('log')}") from None

    def load(self, model: Model) -> None:
        """Have the voice process load ``model`` now, without holding it or waiting for it: a run warming up its
        voice (``PiperVoice.warm_up``). A server started for this loads it as soon as it listens; one already
        running is asked to, and does so whether or not this client is still there."""
        which = {"onnx": str(model.onnx), "config": str(model.config_path), "threads": model.threads}
        with self._connect(load=which) as conn:
            conn.send({"op": "load", **which, "timeout_s": START_TIMEOUT_S, "idle_s": self.idle_s})

    def status(self) -> dict[str, Any]:
        """The server's pid and the models it loaded (starting it if none runs)."""
        return self._ask({"op": "status"}, time.monotonic() + START_TIMEOUT_S)

    def _ask(self, request: dict[str, Any], deadline: float) -> Any:
        from renderer.ops import reliability  # the client's: the server never imports the config schema

        try:
            conn = self._connect()
        except (EOFError, OSError) as exc:  # it died as it let this client in
            raise ServerLost(f"{type(exc).__name__}: {exc}") from None
        try:
            conn.send({**request, "timeout_s": deadline - time.monotonic(), "idle_s": self.idle_s})
            while not conn.poll(WAIT_SLICE_S):
                if self._cancelled.is_set() or reliability.cancelled():
                    raise reliability.Cancelled("piper: cancelled while the voice process was speaking")
                if time.monotonic() > deadline + REPORT_GRACE_S:
                    raise PiperTimeout("piper: the narration took longer than its timeout (limits.ffmpeg_timeout_s)")
            kind, value = conn.recv()
        except PiperTimeout:  # a TimeoutError, hence an OSError: not a lost server
            raise
        except (EOFError, OSError) as exc:
            raise ServerLost(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        finally:
            conn.close()
        if kind == "timeout":
            raise PiperTimeout(value)
        if kind == "error":
            raise PiperError(value)
        return value

    def _connect(self, load: dict[str, Any] | None = None) -> Connection:
        """A connection to the server, started if none answers (``load``: the model it loads as it starts)."""
        where = place()
        key = authkey(where)
        with suppress(*NO_SERVER):
            return Client(str(where.socket), family="AF_UNIX", authkey=key)
        with _locked(where.file("lock")):  # one client starts it; the others find it running
            with suppress(*NO_SERVER):
                return Client(str(where.socket), family="AF_UNIX", authkey=key)
            _start(where, self.idle_s, load)
            try:
                return Client(str(where.socket), family="AF_UNIX", authkey=key)
            except (OSError, AuthenticationError) as exc:
                raise PiperError(f"the voice process started but does not answer ({exc}); its log: "
                                 f"{where.file('log')}") from None


def _start(where: Place, idle_s: float, load: dict[str, Any] | None = None) -> None:
    """Start the server and return once it listens (its launcher exits 0 then, the server detached)."""
    with open(where.file("log"), "ab") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "renderer.providers.voice_server", "--idle-s", str(idle_s),
                                     *(["--load", json.dumps(load)] if load else [])],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True, close_fds=True)
    try:
        code = launcher.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
        code = None
    if code != 0:
        tail = where.file("log").read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        why = f"no answer in {START_TIMEOUT_S:g} s" if code is None else f"exit {code}"
        raise PiperError(f"the voice process did not start ({why}): {' / '.join(tail) or 'no message'}; its log: "
                         f"{where.file('log')}")


def running_pid() -> int | None:
    """The pid of this installation's voice process, if one is listening (for benchmarks and tests)."""
    with suppress(OSError, ValueError, PiperError):
        where = place()
        if where.socket.exists():
            return int(where.file("pid").read_text())
    return None


# --- the server ---------------------------------------------------------------------------------------------
class Server:
    def __init__(self, where: Place, idle_s: float):
        self.where, self.idle_s = where, idle_s
        self.state = threading.Condition()
        self.active, self.last, self.closing = 0, time.monotonic(), False
        self.holds = 0
        self.let_go = False  # the last hold ended after the last sentence: nobody has more to say

    def handle(self, conn: Connection) -> None:
        """One client's requests, until it closes the connection."""
        with conn:
            while True:
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                with self.state:
                    if self.closing:
                        return  # the client starts a new server
                    self.idle_s = float(request.get("idle_s", self.idle_s))
                    if request.get("op") == "hold":
                        self.holds += 1
                    else:
                        self.active += 1
                        self.let_go = False
                if request.get("op") == "hold":
                    self.held(conn)
                    return
                try:
                    reply = self.answer(request, conn)
                finally:
                    with self.state:
                        self.active -= 1
                        self.last = time.monotonic()
                        self.state.notify_all()
                if reply is None:
                    return
                try:
                    conn.send(reply)
                except OSError:
                    return

    def held(self, conn: Connection) -> None:
        """A client holds the server until it closes this connection (or its process dies)."""
        with suppress(EOFError, OSError):
            while True:
                conn.recv()  # nothing is sent on a hold; this returns when the client lets go
        with self.state:
            self.holds -= 1
            self.let_go = not self.holds and not self.active
            self.last = time.monotonic()
            self.state.notify_all()

    def answer(self, request: dict[str, Any], conn: Connection) -> tuple[str, Any] | None:
        if request.get("op") == "status":
            return "status", {"pid": os.getpid(), "loads": Model.loads, "idle_s": self.idle_s}
        deadline = time.monotonic() + float(request["timeout_s"])
        try:
            model = loaded(Path(request["onnx"]), Path(request["config"]), int(request["threads"]))
            if request.get("op") == "load":
                model.load()
                return None  # nobody waits for this
            return "audio", model.speak(request["text"], request["cast"], deadline, gone=conn.poll,
                                        last=request["last"])
        except Abandoned:  # the client closed its connection: nobody to answer
            return None
        except PiperTimeout as exc:
            return "timeout", str(exc)
        except Exception as exc:
            return "error", str(exc) if isinstance(exc, PiperError) else f"{type(exc).__name__}: {exc}"

    def preload(self, which: dict[str, Any]) -> None:
        """Load a model before anyone asks (the server was started to warm a run's voice up)."""
        try:
            loaded(Path(which["onnx"]), Path(which["config"]), int(which["threads"])).load()
        except Exception as exc:  # a sentence asking for it reports the failure
            logger.warning("voice process: the model was not loaded ahead: {}", exc)
        finally:
            with self.state:
                self.active -= 1
                self.last = time.monotonic()
                self.state.notify_all()

    def done(self) -> bool:
        """Nothing held, nothing spoken, and either every holder let go or nothing was asked for ``idle_s``."""
        if self.active or self.holds:
            return False
        return self.let_go or time.monotonic() - self.last >= self.idle_s

    def exit_when_idle(self) -> None:
        """Exit once ``done()``: the socket first (under the start lock, so no client is starting a successor
        meanwhile), then the process."""
        mine = self.where.socket.stat().st_ino
        while True:
            with self.state:
                self.state.wait(min(1.0, max(0.05, self.idle_s / 4)))
                if not self.done():
                    continue
                with _locked(self.where.file("lock"), blocking=False) as held:
                    if not held:
                        continue
                    self.closing = True
                    with suppress(OSError):
                        if self.where.socket.stat().st_ino == mine:
                            self.where.socket.unlink()
                            self.where.file("pid").unlink(missing_ok=True)
            os._exit(0)


def serve(idle_s: float, ready: int | None = None, load: dict[str, Any] | None = None) -> None:
    """Listen on this installation's socket until idle; ``ready`` (a pipe's write end) is told once listening;
    ``load`` (onnx, config, threads): a model loaded meanwhile, as a request to load it would."""
    where = place()
    key = authkey(where)
    where.socket.unlink(missing_ok=True)  # a dead server's; a live one would have answered the client
    listener = Listener(str(where.socket), family="AF_UNIX", authkey=key)
    where.file("pid").write_text(str(os.getpid()))
    server = Server(where, idle_s)
    threading.Thread(target=server.exit_when_idle, name="idle-exit", daemon=True).start()
    if ready is not None:
        os.write(ready, b"ok")
        os.close(ready)
    if load:
        with server.state:
            server.active += 1
        threading.Thread(target=server.preload, args=(load,), name="voice-load", daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (AuthenticationError, OSError, EOFError) as exc:
            logger.warning("voice process: a connection refused: {}", exc)
            continue
        threading.Thread(target=server.handle, args=(conn,), name="voice-client", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """The launcher: fork the server (outside the caller's process tree), exit 0 once it listens."""
    parser = argparse.ArgumentParser(prog="python -m renderer.providers.voice_server")
    parser.add_argument("--idle-s", type=float, required=True, help="exit after this long with nothing to do")
    parser.add_argument("--foreground", action="store_true", help="serve in this process")
    parser.add_argument("--load", type=json.loads, help="a model to load once listening (JSON: onnx, config, threads)")
    args = parser.parse_args(argv)
    if args.foreground:
        serve(args.idle_s, load=args.load)
        return 0
    read, write = os.pipe()
    if os.fork():  # the launcher: wait for the word that the server listens
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            return 0 if pipe.read() == b"ok" else 1
    os.close(read)
    os.chdir("/")
    try:
        serve(args.idle_s, ready=write, load=args.load)
    except BaseException as exc:
        print(f"voice process: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
