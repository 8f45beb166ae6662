"""The serial protocol between the board and the Pi: frames, one codec for both ends.

A frame on the wire is COBS-encoded ``version, type, payload, CRC-32`` between
two 0x00 delimiters.  COBS leaves no 0x00 inside a frame, so a receiver that
starts in the middle of garbage is back in step at the next delimiter, and a
frame cut short (a reset mid-frame) costs only itself.  The CRC-32 (IEEE, as ``binascii.crc32``) covers
version, type and payload.  The specification is docs/serial-protocol.md.

>>> wire = encode(ACK, pack(ACK, 41))
>>> [(f.type, unpack(f.type, f.payload)) for f in Decoder().feed(wire)]
[(4, ((41,), b''))]
"""

import struct

try:
    from binascii import crc32
except ImportError:  # pragma: no cover
    from zlib import crc32

from alarmpost.events import Event

VERSION = 1
MAX_BODY = 128  # version + type + payload + CRC, before COBS
MAX_PAYLOAD = MAX_BODY - 6
MAX_ENCODED = MAX_BODY + 1  # COBS adds one byte per 254
MAX_WIRE = MAX_ENCODED + 2  # and a delimiter on each side

# Frame types
HELLO = 0x01  # board -> Pi, at boot and when asked
HELLO_ACK = 0x02  # Pi -> board
EVENT = 0x03  # board -> Pi
ACK = 0x04  # Pi -> board: every event up to this seq is stored
HEARTBEAT = 0x05  # both ways, every heartbeat period
COMMAND = 0x06  # Pi -> board
RESULT = 0x07  # board -> Pi
ERROR = 0x7F  # either way: a frame was refused

# Commands and results
CMD_ACKNOWLEDGE = 1
CMD_SILENCE = 2
CMD_RESET = 3
CMD_TEST_PATTERN = 4
CMD_SELF_TEST = 5
CMD_STATUS = 6
CMD_CONFIG_SET = 7

OK = 0
REFUSED = 1  # not possible in the present state
BAD_ARGS = 2
UNKNOWN_COMMAND = 3
FAILED = 4

# Error reasons
ERR_UNKNOWN_TYPE = 1
ERR_VERSION = 2
ERR_BAD_PAYLOAD = 3

# Heartbeat flags
HB_WANT_HELLO = 1  # Pi -> board: "I do not know you yet, say hello"
HB_SIREN = 1  # board -> Pi: the siren is sounding (a pattern is playing)
HB_STROBE = 2  # board -> Pi: the strobe shows a pattern
HB_TESTING = 4  # board -> Pi: a test pattern is running

# Alarm states carried by heartbeats
STATES = ("idle", "alarm", "acknowledged", "silenced")


class Frame:
    def __init__(self, version, type, payload):
        self.version = version
        self.type = type
        self.payload = payload

    def __repr__(self):
        return "Frame(%d, 0x%02x, %r)" % (self.version, self.type, self.payload)


# -- framing ------------------------------------------------------------------------


def cobs_encode(data):
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out.extend(block)
            block = bytearray()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out.extend(block)
                block = bytearray()
    out.append(len(block) + 1)
    out.extend(block)
    return bytes(out)


def cobs_decode(data):
    """The decoded bytes, or None if ``data`` is not valid COBS."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            return None
        out.extend(data[i + 1 : i + code])
        i += code
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)


def encode(type, payload=b"", version=VERSION):
    """One frame, ready for the wire (ends with the 0x00 delimiter)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes is over the maximum %d" % (len(payload), MAX_PAYLOAD))
    body = bytes((version, type)) + payload
    # a delimiter on both sides: a frame cut short by a reset ends at the next frame's start
    return b"\x00" + cobs_encode(body + struct.pack("<I", crc32(body) & 0xFFFFFFFF)) + b"\x00"


class Decoder:
    """Turns a byte stream into frames; counts what it had to throw away.

    ``garbage`` counts discarded byte runs (noise, a frame cut by a reset, an
    overlong run without delimiter); ``bad_crc`` counts well-formed frames whose
    CRC failed.  Nothing here raises on bad input.
    """

    def __init__(self):
        self._buffer = bytearray()
        self._overflow = False
        self.garbage = 0
        self.bad_crc = 0

    def feed(self, data):
        frames = []
        for byte in data:
            if byte != 0:
                if len(self._buffer) < MAX_ENCODED:
                    self._buffer.append(byte)
                else:
                    self._overflow = True
                continue
            if self._overflow:
                self.garbage += 1
            elif self._buffer:
                frame = self._frame(bytes(self._buffer))
                if frame is not None:
                    frames.append(frame)
            self._buffer = bytearray()
            self._overflow = False
        return frames

    def _frame(self, encoded):
        body = cobs_decode(encoded)
        if body is None or not 6 <= len(body) <= MAX_BODY:
            self.garbage += 1
            return None
        (crc,) = struct.unpack("<I", body[-4:])
        if crc != crc32(body[:-4]) & 0xFFFFFFFF:
            self.bad_crc += 1
            return None
        return Frame(body[0], body[1], body[2:-4])


# -- payloads -------------------------------------------------------------------------
# Fixed fields by frame type (little-endian); HELLO, COMMAND and RESULT carry a
# variable tail after them.  ``unpack`` raises ValueError on a payload of the
# wrong size; the link answers such a frame with ERROR / ERR_BAD_PAYLOAD.
#
#   HELLO      boot_id u32, boot u16, oldest_seq u32, last_seq u32; tail: firmware, board (texts)
#   HELLO_ACK  acked_seq u32, heartbeat_ms u16
#   EVENT      seq u32, uptime_ms u32, boot u16, code u16, qualifier u8, zone u8, value u16
#   ACK        acked_seq u32
#   HEARTBEAT  flags u8, state u8, faults u8, seq u32 (board: its last seq; Pi: its acked seq)
#   COMMAND    request u16, command u8; tail: arguments
#   RESULT     request u16, status u8; tail: data
#   ERROR      reason u8, offending type u8, sender's protocol version u8

FIELDS = {
    HELLO: "<IHII",
    HELLO_ACK: "<IH",
    EVENT: "<IIHHBBH",
    ACK: "<I",
    HEARTBEAT: "<BBBI",
    COMMAND: "<HB",
    RESULT: "<HB",
    ERROR: "<BBB",
}
_TAILED = (HELLO, COMMAND, RESULT)


def pack(type, *fields, tail=b""):
    return struct.pack(FIELDS[type], *fields) + tail


def unpack(type, payload):
    """(fields, tail) of a payload of this frame type."""
    fmt = FIELDS[type]
    size = struct.calcsize(fmt)
    if len(payload) < size or (type not in _TAILED and len(payload) != size):
        raise ValueError("payload of %d bytes, expected %d" % (len(payload), size))
    return struct.unpack(fmt, payload[:size]), bytes(payload[size:])


def texts(*values):
    """Length-prefixed texts (at most 40 bytes each) for a payload tail."""
    out = b""
    for value in values:
        raw = value.encode()
        while len(raw) > 40:  # cut whole characters, never inside one
            value = value[:-1]
            raw = value.encode()
        out += bytes((len(raw),)) + raw
    return out


def untexts(tail, count):
    values = []
    for _ in range(count):
        if not tail or tail[0] + 1 > len(tail):
            raise ValueError("text cut short")
        values.append(tail[1 : 1 + tail[0]].decode())
        tail = tail[1 + tail[0] :]
    return values


def pack_event(event):
    return pack(
        EVENT,
        event.seq,
        event.uptime_ms & 0xFFFFFFFF,
        event.boot & 0xFFFF,
        event.code,
        event.qualifier,
        event.zone,
        event.value & 0xFFFF,
    )


def unpack_event(payload):
    seq, uptime, boot, code, qualifier, zone, value = unpack(EVENT, payload)[0]
    return Event(seq, boot, uptime, code, qualifier, zone, value)


def error(reason, frame_type):
    """An ERROR frame refusing a frame of ``frame_type``."""
    return encode(ERROR, pack(ERROR, reason, frame_type, VERSION))


def check_frame(frame):
    """None if this end can handle ``frame``, else the ERROR frame to answer it with.

    An ERROR of another version is answered with ``b""`` (drop it, say nothing):
    two ends of different versions must not answer each other's errors forever.
    """
    if frame.version != VERSION:
        return b"" if frame.type == ERROR else error(ERR_VERSION, frame.type)
    if frame.type not in FIELDS:
        return error(ERR_UNKNOWN_TYPE, frame.type)
    return None
