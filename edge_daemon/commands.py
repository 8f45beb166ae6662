"""The centre's commands at the post: checked, carried out once, answered and audited.

A command is carried out only when its signature is valid (:mod:`edge_daemon.auth`),
its timestamp is within the window and its nonce is new; anything else changes
nothing and is answered ``unauthenticated``.  Every command, carried out or not,
leaves an audit record in the store, which the uplink delivers like an event.

Board commands go over the serial link (:meth:`BoardLink.command`); ``replay``
is the uplink's; ``snapshot`` and ``stream`` belong to the camera, and are
answered ``unavailable`` on a post without one.  Home Assistant's buttons reach
the desk unsigned and may ask only for ``status`` and ``self_test``, which
touch neither the outputs nor the alarm.

Example (inside the daemon's running loop)::

    desk = CommandDesk(key, store, link, topics)
    result = await desk.handle(payload, headers, "commands")  # {"status": "ok", ...}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from alarmpost import codec
from edge_daemon import auth, contract
from edge_daemon.contract import COMMAND_WINDOW_S, UNSIGNED_COMMANDS, ContractError, Topics, iso_time
from edge_daemon.link import BoardLink
from edge_daemon.store import EventStore

log = logging.getLogger("edge_daemon.commands")

BOARD_COMMANDS = {
    "acknowledge": codec.CMD_ACKNOWLEDGE,
    "silence": codec.CMD_SILENCE,
    "reset": codec.CMD_RESET,
    "test": codec.CMD_TEST_PATTERN,
    "self_test": codec.CMD_SELF_TEST,
    "status": codec.CMD_STATUS,
    "config_set": codec.CMD_CONFIG_SET,
}
BOARD_STATUSES = {
    codec.OK: "ok",
    codec.REFUSED: "refused",
    codec.BAD_ARGS: "bad_args",
    codec.UNKNOWN_COMMAND: "unknown_command",
    codec.FAILED: "failed",
}

# (status, detail, data) of a command carried out
Outcome = tuple[str, str, Any]
# A command the daemon carries out itself (replay, snapshot...): its args -> outcome
LocalCommand = Callable[[dict[str, Any]], Awaitable[Outcome]]


class CommandDesk:
    window_s = COMMAND_WINDOW_S
    board_timeout_s = 3.0

    def __init__(
        self,
        key: bytes,
        store: EventStore,
        link: BoardLink,
        topics: Topics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.store = store
        self.link = link
        self.topics = topics
        self.clock = clock
        self.local: dict[str, LocalCommand] = {}

    async def handle(self, payload: bytes, headers: dict[str, str] | None, via: str = "commands") -> dict[str, Any]:
        """Check and carry out one command; the result payload (audited before it is returned)."""
        command: dict[str, Any] | None = None
        parse_error = ""
        try:
            command = contract.decode("commands", payload)
        except ContractError as exc:
            parse_error = str(exc)
        verdict, detail = self._authenticate(payload, headers)
        name = command["command"] if command else _name_of(payload)
        if verdict != "valid":
            status = "unauthenticated"
            log.warning("command refused", extra={"command": name, "auth": verdict, "detail": detail})
            return self._finish(command, name, headers, verdict, status, detail, None, via)
        if command is None:
            return self._finish(None, name, headers, verdict, "malformed", parse_error, None, via)
        status, detail, data = await self._carry_out(command)
        return self._finish(command, name, headers, verdict, status, detail, data, via)

    async def handle_unsigned(self, payload: bytes) -> dict[str, Any]:
        """A Home Assistant button: ``status`` or ``self_test`` as plain text; nothing else is taken."""
        name = payload.decode("utf-8", "replace").strip()
        if name not in UNSIGNED_COMMANDS:
            detail = f"only {', '.join(UNSIGNED_COMMANDS)} may be asked for without a signature"
            return self._finish(
                None, name[:40] or None, None, "unsigned", "unauthenticated", detail, None, "homeassistant"
            )
        status, detail, data = await self._carry_out({"command": name}, signed=False)
        return self._finish({"command": name}, name, None, "not_required", status, detail, data, "homeassistant")

    def _authenticate(self, payload: bytes, headers: dict[str, str] | None) -> tuple[str, str]:
        verdict, detail = auth.verify(
            self.key, self.topics.commands, payload, headers or {}, now=self.clock(), window_s=self.window_s
        )
        if verdict == "valid":
            assert headers is not None
            if not self.store.remember_nonce(headers["nonce"], float(headers["ts"]), keep_s=4 * self.window_s):
                return "replayed", "this nonce was used before: a command is carried out once"
        return verdict, detail

    async def _carry_out(self, command: dict[str, Any], signed: bool = True) -> Outcome:
        """``signed`` False (a Home Assistant button): a self-test only reads the board's last
        answers; it never chirps the siren, so an unsigned request cannot sound it."""
        name = command["command"]
        args = command.get("args", {})
        if name in self.local:
            try:
                return await self.local[name](args)
            except Exception as exc:  # a fault in one part must still get the centre an answer
                log.exception("command failed", extra={"command": name})
                return "failed", f"{name} failed on the post: {exc}", None
        if name not in BOARD_COMMANDS:
            return "unavailable", f"this post has no {name} (no such part configured)", None
        if self.link.up is not True:
            return "link_down", "the serial link to the board is down; the command was not sent", None
        raw = b"" if signed or name != "self_test" else b"read"
        if name == "config_set":
            raw = f"{args['key']}={json.dumps(args['value'], separators=(',', ':'))}".encode()
            if len(raw) > codec.MAX_PAYLOAD - 3:
                return "bad_args", f"key=value is {len(raw)} bytes; at most {codec.MAX_PAYLOAD - 3} fit a frame", None
        try:
            code, data = await self.link.command(BOARD_COMMANDS[name], raw, timeout=self.board_timeout_s)
        except TimeoutError:
            return "timeout", f"no answer from the board within {self.board_timeout_s:g} s", None
        status = BOARD_STATUSES.get(code, "failed")
        return status, _describe(name, status, data), _data(data)

    def _finish(
        self,
        command: dict[str, Any] | None,
        name: str | None,
        headers: dict[str, str] | None,
        verdict: str,
        status: str,
        detail: str,
        data: Any,
        via: str,
    ) -> dict[str, Any]:
        operator = command.get("operator") if command else None
        nonce = (headers or {}).get("nonce")
        audit = {
            "command": name,
            "operator": operator,
            "nonce": nonce if isinstance(nonce, str) and len(nonce) <= 64 else None,
            "auth": verdict,
            "status": status,
            "detail": detail,
            "via": via,
        }
        self.store.add_audit(json.dumps(audit, sort_keys=True))
        log.info("command " + status, extra={"command": name, "auth": verdict, "operator": operator})
        result: dict[str, Any] = {"command": name, "status": status, "detail": detail, "at": iso_time(self.clock())}
        if data is not None:
            result["data"] = data
        return result


def _name_of(payload: bytes) -> str | None:
    """The command's name from a payload that did not pass the schema, for the audit."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    name = value.get("command") if isinstance(value, dict) else None
    return name[:40] if isinstance(name, str) else None


def _data(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def _describe(name: str, status: str, raw: bytes) -> str:
    if status == "ok":
        return f"{name} carried out"
    text = raw.decode("utf-8", "replace") if raw and not raw.startswith(b"{") else ""
    return f"{name}: the board answered {status}" + (f": {text}" if text else "")
