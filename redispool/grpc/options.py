"""The gRPC options of ``redispool serve`` and how serve hands over to the gRPC server.

Imports only click and the core, so ``redispool serve`` without the grpc extra loads nothing of grpc;
``--grpc-port`` without the extra is one line, exit 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from ..engine import Engine

NAMES = ("grpc_port", "grpc_cert", "grpc_key", "http")


@dataclass
class GrpcSettings:
    port: int | None
    cert: str | None
    key: str | None
    http: bool

    def run(self, engine: Engine, tokens: dict[str, str] | None, *, server: Any, sockets: list[Any], host: str,
            grace: float) -> None:
        """Serve: HTTP alone as before, or gRPC beside it (or alone, with --no-http)."""
        if self.port is None:
            server.run(sockets=sockets)
            return
        from .server import run
        run(engine, tokens, http=server if self.http else None, sockets=sockets, host=host, port=self.port,
            cert=self.cert, key=self.key, grace=grace)


def grpc_options(command: Any) -> Any:
    """--grpc-port/--grpc-cert/--grpc-key/--http of serve (their values are taken out of the
    command's extra keyword arguments by ``settings``)."""
    for option in reversed([
        click.option("--grpc-port", "grpc_port", type=click.IntRange(0, 65535),
                     help="also serve gRPC on this port (redispool.v1.Jobs, spooled.v1, health, reflection; "
                          "extra redispool[grpc])"),
        click.option("--grpc-cert", "grpc_cert", type=click.Path(dir_okay=False, exists=True),
                     help="PEM certificate chain: gRPC over TLS (with --grpc-key)"),
        click.option("--grpc-key", "grpc_key", type=click.Path(dir_okay=False, exists=True),
                     help="PEM private key of --grpc-cert"),
        click.option("--http/--no-http", "http", default=True, show_default=True,
                     help="serve HTTP (--no-http: gRPC alone, with --grpc-port)"),
    ]):
        command = option(command)
    return command


def settings(options: dict[str, Any]) -> GrpcSettings:
    """The gRPC settings, removed from ``options`` (serve's other keyword arguments)."""
    s = GrpcSettings(*(options.pop(name) for name in NAMES))
    if (s.cert is None) != (s.key is None):
        raise click.UsageError("--grpc-cert and --grpc-key go together")
    if not s.http and s.port is None:
        raise click.UsageError("--no-http needs --grpc-port (else nothing would be served)")
    if s.port is not None:
        try:
            import grpc  # noqa: F401
            import grpc_health  # noqa: F401
            import grpc_reflection  # noqa: F401
        except ImportError as exc:
            fail = click.ClickException(f"--grpc-port needs the grpc extra: pip install 'redispool[grpc]' "
                                        f"({exc.name} is missing)")
            raise fail from None
    return s
