"""Writes serial_frames.json: golden vectors for the board-Pi serial protocol.

Run from the repository root:

    python tests/vectors/make_serial_frames.py          # rewrites tests/vectors/serial_frames.json
    python tests/vectors/make_serial_frames.py --check  # exit 1 if the file differs from what it would write

The vectors are built **without** the codec (``alarmpost.codec``): the frame types,
payload layouts and constants below are copied from the specification
(docs/serial-protocol.md), the CRC is ``zlib.crc32`` and COBS is a direct
transcription of Cheshire and Baker's ``StuffData`` (IEEE/ACM Transactions on
Networking, 1999).  The tests then check that the codec produces and accepts
exactly these bytes, on CPython (tests/test_codec.py) and on the MicroPython unix
port (tests/mpy/test_codec_vectors.py).  The script has no randomness: the same
file comes out on every run.

What the file holds (every byte string in lower-case hex):

``constants``
    protocol numbers by name, as the codec must define them.
``frames``
    one or more vectors per frame type: ``type``, ``version``, the fixed ``fields`` in
    wire order, the ``tail`` (and ``texts`` when the tail is length-prefixed texts),
    the ``payload``, the ``body`` (version, type, payload), its ``crc`` (little-endian
    u32 as hex) and the exact ``wire`` bytes, delimiters included.  EVENT vectors also
    give ``event``: the fields in ``Event(seq, boot, uptime_ms, code, qualifier, zone,
    value)`` order.
``refusals``
    a received frame (``version``, ``type``, ``payload``) and the ERROR frame
    ``check_frame`` answers it with (``answer``, wire hex), or null when it is accepted.
``bad_payloads``
    payloads that ``unpack`` must refuse with ValueError for their frame type.
``cobs``
    ``decoded`` / ``encoded`` pairs: the encoder must produce ``encoded`` and the
    decoder must give back ``decoded``.
``cobs_decode_only``
    encodings a decoder must accept (or refuse: ``decoded`` null) that the encoder
    does not produce.
``streams``
    a byte ``stream`` with noise, cut frames and good frames, and the ``frames``
    (``version``, ``type``, ``payload``) a fresh Decoder must yield from it, in order.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("serial_frames.json")

# -- the protocol, from the specification (not imported from the codec) ----------------

VERSION = 1
MAX_BODY = 128
MAX_PAYLOAD = MAX_BODY - 6

TYPES = {
    "HELLO": 0x01,
    "HELLO_ACK": 0x02,
    "EVENT": 0x03,
    "ACK": 0x04,
    "HEARTBEAT": 0x05,
    "COMMAND": 0x06,
    "RESULT": 0x07,
    "ERROR": 0x7F,
}
LAYOUT = {  # fixed fields, little-endian; HELLO, COMMAND and RESULT have a tail after them
    "HELLO": "<IHII",  # boot_id, boot, oldest_seq, last_seq
    "HELLO_ACK": "<IH",  # acked_seq, heartbeat_ms
    "EVENT": "<IIHHBBH",  # seq, uptime_ms, boot, code, qualifier, zone, value
    "ACK": "<I",  # acked_seq
    "HEARTBEAT": "<BBBI",  # flags, state, faults, seq
    "COMMAND": "<HB",  # request, command
    "RESULT": "<HB",  # request, status
    "ERROR": "<BBB",  # reason, offending type, sender's version
}
COMMANDS = {
    "CMD_ACKNOWLEDGE": 1,
    "CMD_SILENCE": 2,
    "CMD_RESET": 3,
    "CMD_TEST_PATTERN": 4,
    "CMD_SELF_TEST": 5,
    "CMD_STATUS": 6,
    "CMD_CONFIG_SET": 7,
}
STATUSES = {"OK": 0, "REFUSED": 1, "BAD_ARGS": 2, "UNKNOWN_COMMAND": 3, "FAILED": 4}
REASONS = {"ERR_UNKNOWN_TYPE": 1, "ERR_VERSION": 2, "ERR_BAD_PAYLOAD": 3}
FLAGS = {"HB_WANT_HELLO": 1}
STATES = ["idle", "alarm", "acknowledged", "silenced"]


# -- reference implementations -----------------------------------------------------------


def cobs_stuff(data: bytes) -> bytes:
    """COBS as in Cheshire and Baker's StuffData: a full block of 254 non-zero bytes gets code
    0xFF, and the final block is always written (so 254 non-zero bytes end with a 0x01 block)."""
    out = bytearray([0])
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_unstuff(data: bytes) -> bytes | None:
    """Cheshire and Baker's UnStuffData, refusing a block that runs past the end or a zero."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            return None
        out += data[i + 1 : i + code]
        i += code
        if code != 0xFF and i != len(data):
            out.append(0)
    return bytes(out)


def crc(body: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def wire(type_: int, payload: bytes, version: int = VERSION) -> bytes:
    body = bytes([version, type_]) + payload
    assert len(body) + 4 <= MAX_BODY
    return b"\x00" + cobs_stuff(body + crc(body)) + b"\x00"


def texts(*values: str) -> bytes:
    out = b""
    for value in values:
        raw = value.encode("utf-8")
        assert len(raw) <= 40
        out += bytes([len(raw)]) + raw
    return out


def frame(
    name: str,
    kind: str,
    fields: list[int],
    direction: str,
    texts_: list[str] | None = None,
    tail: bytes = b"",
    event: list[int] | None = None,
) -> dict[str, Any]:
    """One frame vector; the tail is ``texts_`` as length-prefixed texts, or the raw ``tail``."""
    if texts_ is not None:
        tail = texts(*texts_)
    payload = struct.pack(LAYOUT[kind], *fields) + tail
    type_ = TYPES[kind]
    body = bytes([VERSION, type_]) + payload
    vector: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "type": type_,
        "version": VERSION,
        "direction": direction,
        "fields": fields,
        "tail": tail.hex(),
    }
    if texts_ is not None:
        vector["texts"] = texts_
    if event is not None:
        vector["event"] = event
    vector.update(payload=payload.hex(), body=body.hex(), crc=crc(body).hex(), wire=wire(type_, payload).hex())
    return vector


def event_frame(
    name: str, seq: int, boot: int, uptime_ms: int, code: int, qualifier: int, zone: int, value: int
) -> dict[str, Any]:
    fields = [seq, uptime_ms, boot, code, qualifier, zone, value]  # wire order
    return frame(name, "EVENT", fields, "board -> Pi", event=[seq, boot, uptime_ms, code, qualifier, zone, value])


def build_frames() -> list[dict[str, Any]]:
    status = b'{"state": "alarm", "siren": true, "faults": 0, "seq": 42, "boot": 3, "supply_cv": 1372}'
    return [
        frame(
            "hello at boot",
            "HELLO",
            [0x9E3779B9, 3, 1, 42],
            "board -> Pi",
            texts_=["0.2.0", "rpi_pico"],
        ),
        frame("hello, empty journal, empty texts", "HELLO", [1, 1, 0, 0], "board -> Pi", texts_=["", ""]),
        frame(
            "hello, non-ASCII board name",
            "HELLO",
            [0xFFFFFFFF, 65535, 4294967295, 4294967295],
            "board -> Pi",
            texts_=["0.2.0", "校门-1"],
        ),
        frame("hello ack", "HELLO_ACK", [41, 1000], "Pi -> board"),
        frame("hello ack, nothing stored", "HELLO_ACK", [0, 100], "Pi -> board"),
        event_frame("panic, first press", 42, 3, 93500, 120, 1, 1, 1),
        event_frame("link trouble restore", 7, 1, 0, 350, 3, 7, 0),
        event_frame("every field at its maximum", 4294967295, 65535, 4294967295, 65535, 255, 255, 65535),
        frame("ack", "ACK", [41], "Pi -> board"),
        frame("ack of nothing", "ACK", [0], "Pi -> board"),
        frame("heartbeat from the board, alarm latched, one fault", "HEARTBEAT", [0, 1, 1, 42], "board -> Pi"),
        frame("heartbeat from the Pi that wants a hello", "HEARTBEAT", [1, 0, 0, 0], "Pi -> board"),
        frame("command: reset", "COMMAND", [1, 3], "Pi -> board"),
        frame("command: config set", "COMMAND", [65535, 7], "Pi -> board", tail=b"siren_cutoff_s=300"),
        frame(
            "command with the largest payload",
            "COMMAND",
            [513, 7],
            "Pi -> board",
            tail=b"x=" + b"\x00\xff" * 58 + b"1",
        ),
        frame("result: status", "RESULT", [1, 0], "board -> Pi", tail=status),
        frame("result: unknown command", "RESULT", [2, 3], "board -> Pi"),
        frame("error: unknown type", "ERROR", [1, 0x55, 1], "either way"),
        frame("error: bad version", "ERROR", [2, 0x05, 1], "either way"),
        frame("error: bad payload", "ERROR", [3, 0x03, 1], "either way"),
    ]


def build_refusals() -> list[dict[str, Any]]:
    def error(reason: int, type_: int) -> str:
        return wire(TYPES["ERROR"], struct.pack("<BBB", reason, type_, VERSION)).hex()

    return [
        {"name": "unknown type", "version": 1, "type": 0x55, "payload": "0102", "answer": error(1, 0x55)},
        {"name": "type zero", "version": 1, "type": 0x00, "payload": "", "answer": error(1, 0x00)},
        {"name": "version 9 event", "version": 9, "type": 0x03, "payload": "00" * 16, "answer": error(2, 0x03)},
        {"name": "version 0 heartbeat", "version": 0, "type": 0x05, "payload": "", "answer": error(2, 0x05)},
        {
            "name": "version first: bad version and unknown type",
            "version": 2,
            "type": 0x55,
            "payload": "",
            "answer": error(2, 0x55),
        },
        {"name": "known type and version", "version": 1, "type": 0x04, "payload": "29000000", "answer": None},
        {
            "name": "accepted even with a bad payload (unpack refuses it)",
            "version": 1,
            "type": 0x04,
            "payload": "29",
            "answer": None,
        },
    ]


def build_bad_payloads() -> list[dict[str, Any]]:
    bad = []
    for kind, fmt in LAYOUT.items():
        size = struct.calcsize(fmt)
        bad.append({"kind": kind, "type": TYPES[kind], "payload": "ab" * (size - 1)})
        if kind not in ("HELLO", "COMMAND", "RESULT"):
            bad.append({"kind": kind, "type": TYPES[kind], "payload": "ab" * (size + 1)})
    bad.append({"kind": "EVENT", "type": TYPES["EVENT"], "payload": ""})
    return bad


def nonzero(count: int, start: int = 1) -> bytes:
    return bytes((start - 1 + i) % 255 + 1 for i in range(count))


def build_cobs() -> list[dict[str, Any]]:
    cases = [
        ("empty", b""),
        ("one zero", b"\x00"),
        ("two zeros", b"\x00\x00"),
        ("one non-zero byte", b"\x11"),
        ("zero in the middle", b"\x11\x22\x00\x33"),
        ("trailing zeros", b"\x11\x00\x00\x00"),
        ("253 non-zero bytes", nonzero(253)),
        ("254 non-zero bytes", nonzero(254)),
        ("255 non-zero bytes", nonzero(255)),
        ("zero then 254 non-zero bytes", b"\x00" + nonzero(254)),
        ("254 non-zero bytes then a zero", nonzero(254) + b"\x00"),
        ("a mix", bytes([1, 0, 0, 2, 3, 0, 255, 0]) + nonzero(20, 200) + b"\x00" + nonzero(6, 250)),
    ]
    out = []
    for name, data in cases:
        encoded = cobs_stuff(data)
        assert cobs_unstuff(encoded) == data and 0 not in encoded
        out.append({"name": name, "decoded": data.hex(), "encoded": encoded.hex()})
    return out


def build_cobs_decode_only() -> list[dict[str, Any]]:
    return [
        # the shorter encoding other COBS implementations write for exactly 254 non-zero bytes
        {
            "name": "254 non-zero bytes without the final 0x01 block",
            "encoded": ("ff" + nonzero(254).hex()),
            "decoded": nonzero(254).hex(),
        },
        {"name": "block runs past the end", "encoded": "0511", "decoded": None},
        {"name": "zero code", "encoded": "021100", "decoded": None},
        {"name": "a single 0x01 is one empty block", "encoded": "01", "decoded": ""},
    ]


def build_streams() -> list[dict[str, Any]]:
    hb = struct.pack("<BBBI", 0, 0, 0, 7)
    ev1 = struct.pack("<IIHHBBH", 1, 1500, 1, 305, 1, 0, 1)
    ev2 = struct.pack("<IIHHBBH", 2, 2400, 1, 120, 1, 1, 1)
    ack = struct.pack("<I", 2)
    hello = struct.pack("<IHII", 0x01020304, 1, 1, 2) + texts("0.2.0", "sim")
    w_hb, w_ev1, w_ev2, w_ack, w_hello = (
        wire(TYPES["HEARTBEAT"], hb),
        wire(TYPES["EVENT"], ev1),
        wire(TYPES["EVENT"], ev2),
        wire(TYPES["ACK"], ack),
        wire(TYPES["HELLO"], hello),
    )
    bad_crc = bytearray(w_ev1)
    bad_crc[6] ^= 0x10  # a bit error inside the frame: the CRC fails, COBS still parses
    bad_crc_b = bytes(bad_crc)

    def f(type_: int, payload: bytes, version: int = VERSION) -> dict[str, Any]:
        return {"version": version, "type": type_, "payload": payload.hex()}

    ev, hbt = TYPES["EVENT"], TYPES["HEARTBEAT"]
    streams = [
        (
            "line noise, then frames",
            bytes.fromhex("deadbeef7f00ff13") + w_hb + w_ev1,
            [f(hbt, hb), f(ev, ev1)],
        ),
        (
            "a frame cut by a reset, then the frames sent again",
            w_ev1[: len(w_ev1) // 2] + w_ev1 + w_ev2,
            [f(ev, ev1), f(ev, ev2)],
        ),
        (
            "a frame with a bit error between good ones",
            w_hb + bad_crc_b + w_ev2,
            [f(hbt, hb), f(ev, ev2)],
        ),
        (
            "frames sharing one delimiter",
            w_ev1 + w_ev2[1:] + w_ack[1:],
            [f(ev, ev1), f(ev, ev2), f(TYPES["ACK"], ack)],
        ),
        (
            "a run longer than any frame (no delimiter for 300 bytes), then a frame",
            b"\x00" + nonzero(300) + w_hello,
            [f(TYPES["HELLO"], hello)],
        ),
        (
            "too short to be a frame, and a COBS block running past the delimiter",
            bytes.fromhex("0003010500") + bytes.fromhex("0009aabb00") + w_hb,
            [f(hbt, hb)],
        ),
        (
            "the last frame is not finished yet",
            w_ev1 + w_ev2[:-1],
            [f(ev, ev1)],
        ),
        (
            "a frame of another version and an unknown type pass the decoder",
            wire(hbt, hb, version=9) + wire(0x55, b"\x01\x02"),
            [f(hbt, hb, 9), f(0x55, b"\x01\x02")],
        ),
        (
            "only noise",
            bytes.fromhex("00ff00fe0000015500"),
            [],
        ),
    ]
    return [{"name": name, "stream": data.hex(), "frames": frames} for name, data, frames in streams]


def build() -> dict[str, Any]:
    constants: dict[str, int] = {"VERSION": VERSION, "MAX_BODY": MAX_BODY, "MAX_PAYLOAD": MAX_PAYLOAD}
    for table in (TYPES, COMMANDS, STATUSES, REASONS, FLAGS):
        constants.update(table)
    return {
        "about": "Golden vectors of the board-Pi serial protocol (docs/serial-protocol.md); "
        "written by tests/vectors/make_serial_frames.py, do not edit by hand.",
        "constants": constants,
        "states": STATES,
        "frames": build_frames(),
        "refusals": build_refusals(),
        "bad_payloads": build_bad_payloads(),
        "cobs": build_cobs(),
        "cobs_decode_only": build_cobs_decode_only(),
        "streams": build_streams(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{OUT.name}: up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
