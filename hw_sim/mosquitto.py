"""A real mosquitto for tests and benchmarks: its own config, a free port, and the faults a broker has.

:class:`Mosquitto` writes a config file into the folder it is given and runs
mosquitto on it (optionally inside a network namespace); it can be stopped,
killed, restarted on the same port and frozen (SIGSTOP) to play a broker that
hangs.  :func:`write_password_file` makes a password file mosquitto accepts
without running ``mosquitto_passwd``.

Readiness is read from the broker's own log: ``start()`` returns once mosquitto
says it is running (its listeners are open by then), or raises with the log if
it exits first.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from edge_daemon.broker_accounts import password_hash, write_password_file
from hw_sim.paths import tool

__all__ = ["BrokerError", "Mosquitto", "TlsListener", "free_port", "password_hash", "write_password_file"]

READY_LINE = " running"  # "mosquitto version 2.0.11 running", logged once every listener is open
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class BrokerError(RuntimeError):
    """Mosquitto did not start or stop as asked; the message ends with its log."""


@dataclass(frozen=True)
class TlsListener:
    """A TLS listener beside the plain one: the server's certificate, and whether clients need one too.

    With ``use_identity_as_username`` the CN of the client's certificate is its
    username (for the ACL) and the password file is not consulted on this listener.

    Example (with a PKI from :mod:`hw_sim.certs`)::

        pki = make_pki(Path("/tmp/pki"))
        tls = TlsListener(pki.ca, pki.server.cert, pki.server.key, require_certificate=True)
        with Mosquitto(Path("/tmp/broker"), tls=tls) as broker:
            client.tls_set(str(pki.ca), str(pki.client("centre").cert), str(pki.client("centre").key))
            client.connect("localhost", broker.tls_port)
    """

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False
    use_identity_as_username: bool = False
    port: int = 0  # 0: a free port


class Mosquitto:
    """A mosquitto process on a loopback port (or ``host``/``port``, or inside the network namespace ``netns``).

    Example::

        from pathlib import Path
        import paho.mqtt.client as mqtt
        from hw_sim.mosquitto import Mosquitto

        with Mosquitto(Path("/tmp/broker")) as broker:  # anonymous clients allowed, nothing persisted
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect(broker.host, broker.port)
            broker.kill()       # gone without a word, as on a power cut
            broker.start()      # back on the same port
            print(broker.log_text())

    ``config`` replaces the generated config with the caller's text (which must
    name its own listeners; ``host``/``port`` are then only what the caller says
    they are).  The log goes to ``folder/mosquitto.log``, every start appending to it.
    """

    def __init__(
        self,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: TlsListener | None = None,
        persistence: bool = False,
        netns: str | None = None,
        config: str | None = None,
    ) -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port(host if netns is None else "127.0.0.1")
        self.tls_port = (tls.port or free_port("127.0.0.1")) if tls else None
        self.anonymous = anonymous
        self.password_file = password_file
        self.acl_file = acl_file
        self.tls = tls
        self.persistence_dir = folder / "persistence" if persistence else None
        self.netns = netns
        self.config_file = folder / "mosquitto.conf"
        self.log_file = folder / "mosquitto.log"
        self._config = config
        self.proc: subprocess.Popen[bytes] | None = None

    # -- the config -----------------------------------------------------------------------------------------------

    def config_text(self) -> str:
        """The config mosquitto runs with: the caller's, or one made from this object's settings.

        Either way it starts with a ``user`` line naming the user running the tests:
        mosquitto started as root would otherwise become the user 'mosquitto' and
        lose access to the test's files.
        """
        run_as = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        return run_as + (self._config if self._config is not None else self._generated_config())

    def _generated_config(self) -> str:
        lines = [
            "# written by hw_sim.mosquitto for a test run",
            "per_listener_settings false",
            f"allow_anonymous {str(self.anonymous).lower()}",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "set_tcp_nodelay true",  # as the shipped config: small messages leave at once
            *self._auth_lines(),
            *self._persistence_lines(),
            f"listener {self.port} {self.host}",
            *self._tls_lines(),
        ]
        return "\n".join(lines) + "\n"

    def _auth_lines(self) -> list[str]:
        lines = [f"password_file {self.password_file}"] if self.password_file else []
        return lines + ([f"acl_file {self.acl_file}"] if self.acl_file else [])

    def _persistence_lines(self) -> list[str]:
        if self.persistence_dir is None:
            return ["persistence false"]
        return ["persistence true", f"persistence_location {self.persistence_dir}/"]

    def _tls_lines(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"listener {self.tls_port} {self.host}",
            f"cafile {self.tls.cafile}",
            f"certfile {self.tls.certfile}",
            f"keyfile {self.tls.keyfile}",
            f"require_certificate {str(self.tls.require_certificate).lower()}",
            f"use_identity_as_username {str(self.tls.use_identity_as_username).lower()}",
        ]

    # -- the process ----------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        inside = [tool("ip"), "netns", "exec", self.netns] if self.netns else []
        return [*inside, tool("mosquitto"), "-c", str(self.config_file)]

    def start(self) -> Mosquitto:
        """Write the config, start mosquitto and return once it accepts connections."""
        if self.running:
            raise BrokerError("mosquitto is already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.persistence_dir is not None:
            self.persistence_dir.mkdir(exist_ok=True)
        self.config_file.write_text(self.config_text())
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(log_start)
        return self

    def _wait_ready(self, log_start: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY_LINE not in self.log_since(log_start):
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.proc = None
                raise BrokerError(f"mosquitto exited while starting:\n{self.log_since(log_start)}")
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"mosquitto not running after {START_TIMEOUT_S} s:\n{self.log_since(log_start)}")
            time.sleep(0.005)  # polling the log for readiness

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (mosquitto saves its persistence file) and wait; the exit code, or None if it was not running."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"mosquitto ignored SIGTERM for {STOP_TIMEOUT_S} s and was killed") from None
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing a connection or saving anything."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> Mosquitto:
        """Stop cleanly and start again on the same port(s)."""
        self.stop()
        return self.start()

    def reload(self) -> None:
        """SIGHUP, as ``systemctl reload mosquitto``: the password and ACL files are read again."""
        assert self.proc is not None, "mosquitto is not running"
        self.proc.send_signal(signal.SIGHUP)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered, like a hung broker."""
        assert self.proc is not None, "mosquitto is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None, "mosquitto is not running"
        self.proc.send_signal(signal.SIGCONT)

    def memory_mb(self, field: str = "VmHWM") -> float:
        """The broker process's memory from ``/proc``: its peak resident size (``VmHWM``) or now (``VmRSS``)."""
        assert self.proc is not None, "the broker is not running"
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise BrokerError(f"no {field} in the broker's /proc status")

    def log_text(self) -> str:
        """Everything mosquitto logged in this folder, every start included."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_since(self, offset: int) -> str:
        """The log from byte ``offset`` on (e.g. ``log_file.stat().st_size`` taken before an action)."""
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (mosquitto cannot be told to pick one: port 0 means a unix socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
