"""``transformers serve`` (transformers' own OpenAI-compatible server) in a subprocess, for tests.

``python -m vlaa_data.testing.serve ARGS`` is ``transformers serve ARGS`` with one change: the
processor is loaded by ``vlaa_data.hf.load_processor`` (from transformers 5.25 through the
loader in ``vlaa_data.testing.serve_loader``, before that in serve's ``ModelManager``). Serve
loads it with ``AutoProcessor``, and a Qwen2-VL style processor then wants a video processor,
which needs torchvision; without torchvision serve fails at startup with "Can't load video
processor for ...". (Where ``AutoProcessor`` returns the bare tokenizer instead, serve takes
the model for a text-only one and drops image parts without an error, which is worse.)

``TransformersServe`` runs that on a free loopback port with the model preloaded, waits until
it answers ``/health``, and stops it::

    with TransformersServe(model_dir, log_path=tmp / "serve.log") as server:
        ...  # send chat completions for model ``server.model`` to ``server.url``
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from vlaa_data.testing.server import is_loopback

__all__ = ["TransformersServe", "main"]

# uvicorn logs the port it bound, which is how a server started on port 0 is found.
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class TransformersServe:
    """``transformers serve MODEL`` on 127.0.0.1, its output written to ``log_path``.

    The model is preloaded (serve's ``FORCE_MODEL``), so requests must name it as ``model``
    (``str(model)``) and are answered with ``model`` set to it (``"{model}@main"`` up to
    transformers 5.23). Hub access is off (``HF_HUB_OFFLINE=1``) unless the environment says
    otherwise.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        log_path: Path,
        device: str = "cpu",
        startup_timeout_s: float = 180.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if any(arg == "--host" or arg.startswith("--host=") for arg in extra_args):
            raise ValueError("TransformersServe binds 127.0.0.1 only: extra_args sets no --host")
        self.model = str(model)
        self.log_path = Path(log_path)
        self.device = device
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients: ``http://127.0.0.1:PORT/v1``."""
        if self.port is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        """Everything the server has written so far (its access log included)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> TransformersServe:
        """Start the server; returns once it answers ``/health``, or raises with its log."""
        if self._process is not None:
            raise RuntimeError("the server is already running")
        command = [sys.executable, "-m", __name__, self.model, "--host", "127.0.0.1"]
        command += ["--port", "0", "--device", self.device, *self.extra_args]
        # Unbuffered: uvicorn writes its access log to stdout, which a file would hold back.
        env = {"HF_HUB_OFFLINE": "1", **os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.port = None

    def __enter__(self) -> TransformersServe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve exited with {self._process.returncode}:\n{self._tail()}"
                )
            found = _LISTENING.search(self.log())
            if found and _healthy(int(found.group(1))):
                self.port = int(found.group(1))
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"transformers serve not ready after {self.startup_timeout_s:g} s:\n{self._tail()}"
        )

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:  # refused, reset, or an HTTP error status
        return False


def main(argv: list[str] | None = None) -> None:
    """``transformers serve ARGS``, loading processors through ``vlaa_data.hf.load_processor``.

    A ``--host`` that is not a loopback address is refused: this server is for tests.
    """
    args = sys.argv[1:] if argv is None else argv
    host = _host_of(args)
    if host is not None and not is_loopback(host):
        sys.exit(f"error: vlaa_data.testing.serve binds loopback addresses only, not {host!r}")
    import typer
    from transformers.cli.serve import Serve
    from transformers.cli.serving import model_manager

    if hasattr(model_manager, "ModelLoader"):  # transformers >= 5.25
        from vlaa_data.testing.serve_loader import ProcessorLoader

        # Serve builds its loader from this name when it starts. A deliberate patch of a
        # transformers class, which mypy refuses to let anything rebind.
        model_manager.ModelLoader = ProcessorLoader  # type: ignore[misc]
    else:
        _patch_model_manager(model_manager.ModelManager)
    # Serve alone, not the whole `transformers` CLI, whose other commands take seconds to import.
    app = typer.Typer(add_completion=False)
    app.command()(Serve)
    app(args=args, prog_name="transformers serve")


def _patch_model_manager(manager: Any) -> None:
    """Up to transformers 5.24: the processor is loaded by ``ModelManager._load_processor``."""
    original = manager._load_processor

    def load_processor(self: Any, model_id_and_revision: str, gguf_file: str | None = None):
        from vlaa_data.hf import load_processor

        # "model@revision" up to transformers 5.23; from 5.24 a local folder comes bare.
        if Path(model_id_and_revision).exists():
            model_id, revision = model_id_and_revision, "main"
        else:
            model_id, _, revision = model_id_and_revision.partition("@")
        if gguf_file is not None or revision not in ("", "main"):
            return original(self, model_id_and_revision, gguf_file=gguf_file)
        return load_processor(model_id)

    manager._load_processor = load_processor


def _host_of(args: list[str]) -> str | None:
    """The ``--host`` value in ``args`` (the last one wins, as for any option), if any."""
    host = None
    for i, arg in enumerate(args):
        if arg == "--host" and i + 1 < len(args):
            host = args[i + 1]
        elif arg.startswith("--host="):
            host = arg.removeprefix("--host=")
    return host


if __name__ == "__main__":
    main()
