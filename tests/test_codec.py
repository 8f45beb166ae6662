"""The serial codec on CPython: golden vectors, resynchronisation, limits, refusals, properties and fuzzing.

The golden vectors (tests/vectors/serial_frames.json) are written without the codec by
tests/vectors/make_serial_frames.py; tests/mpy/test_codec_vectors.py checks the same
vectors on the MicroPython unix port.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarmpost import codec
from alarmpost import events as ev

VECTOR_DIR = Path(__file__).parent / "vectors"
VECTORS: dict[str, Any] = json.loads((VECTOR_DIR / "serial_frames.json").read_text(encoding="utf-8"))

_spec = importlib.util.spec_from_file_location("make_serial_frames", VECTOR_DIR / "make_serial_frames.py")
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROPERTY = settings(max_examples=200, deadline=None)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def as_dicts(frames: list[codec.Frame]) -> list[dict[str, Any]]:
    return [{"version": f.version, "type": f.type, "payload": f.payload.hex()} for f in frames]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(item["name"]) for item in items]


# -- golden vectors ---------------------------------------------------------------------


def test_the_vector_file_is_what_its_generator_writes() -> None:
    assert (VECTOR_DIR / "serial_frames.json").read_text(encoding="utf-8") == reference.render()


def test_constants_match_the_specification() -> None:
    for name, value in VECTORS["constants"].items():
        assert getattr(codec, name) == value, name
    assert list(codec.STATES) == VECTORS["states"]
    assert codec.MAX_WIRE == codec.MAX_BODY + 3
    assert {v["type"] for v in VECTORS["frames"]} == set(codec.FIELDS), "every frame type has a vector"


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=ids(VECTORS["frames"]))
def test_golden_frame(vector: dict[str, Any]) -> None:
    payload, tail, wire = h(vector["payload"]), h(vector["tail"]), h(vector["wire"])
    assert codec.pack(vector["type"], *vector["fields"], tail=tail) == payload
    fields, got_tail = codec.unpack(vector["type"], payload)
    assert list(fields) == vector["fields"]
    assert got_tail == tail
    if "texts" in vector:
        assert codec.texts(*vector["texts"]) == tail
        assert codec.untexts(tail, len(vector["texts"])) == vector["texts"]
    if "event" in vector:
        event = ev.Event(*vector["event"])
        assert codec.pack_event(event) == payload
        assert codec.unpack_event(payload) == event
    if vector["type"] == codec.ERROR:
        assert codec.error(vector["fields"][0], vector["fields"][1]) == wire
    assert codec.encode(vector["type"], payload) == wire
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert len(wire) <= codec.MAX_WIRE
    body = h(vector["body"])
    assert struct.pack("<I", zlib.crc32(body)) == h(vector["crc"])
    assert codec.cobs_decode(wire[1:-1]) == body + h(vector["crc"])
    expected = [{"version": vector["version"], "type": vector["type"], "payload": vector["payload"]}]
    assert as_dicts(codec.Decoder().feed(wire)) == expected
    decoder = codec.Decoder()
    assert [f for i in range(len(wire)) for f in as_dicts(decoder.feed(wire[i : i + 1]))] == expected


@pytest.mark.parametrize("vector", VECTORS["refusals"], ids=ids(VECTORS["refusals"]))
def test_golden_refusal(vector: dict[str, Any]) -> None:
    answer = codec.check_frame(codec.Frame(vector["version"], vector["type"], h(vector["payload"])))
    assert (answer.hex() if answer is not None else None) == vector["answer"]


@pytest.mark.parametrize("vector", VECTORS["bad_payloads"], ids=lambda v: f"{v['kind']}-{len(v['payload']) // 2}")
def test_golden_bad_payload_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="payload of"):
        codec.unpack(vector["type"], h(vector["payload"]))
    if vector["type"] == codec.EVENT:
        with pytest.raises(ValueError):
            codec.unpack_event(h(vector["payload"]))


@pytest.mark.parametrize("vector", VECTORS["cobs"], ids=ids(VECTORS["cobs"]))
def test_golden_cobs(vector: dict[str, Any]) -> None:
    assert codec.cobs_encode(h(vector["decoded"])) == h(vector["encoded"])
    assert codec.cobs_decode(h(vector["encoded"])) == h(vector["decoded"])


@pytest.mark.parametrize("vector", VECTORS["cobs_decode_only"], ids=ids(VECTORS["cobs_decode_only"]))
def test_golden_cobs_decode_only(vector: dict[str, Any]) -> None:
    decoded = codec.cobs_decode(h(vector["encoded"]))
    assert (decoded.hex() if decoded is not None else None) == vector["decoded"]


@pytest.mark.parametrize("vector", VECTORS["streams"], ids=ids(VECTORS["streams"]))
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_golden_stream(vector: dict[str, Any], chunk: int | None) -> None:
    stream = h(vector["stream"])
    decoder = codec.Decoder()
    size = chunk or len(stream) or 1
    got = [f for i in range(0, len(stream), size) for f in as_dicts(decoder.feed(stream[i : i + size]))]
    assert got == vector["frames"]


# -- limits and refusals ------------------------------------------------------------------


def test_a_payload_over_the_maximum_is_refused_naming_its_size() -> None:
    codec.encode(codec.COMMAND, bytes(codec.MAX_PAYLOAD))  # the largest is fine
    with pytest.raises(ValueError, match=r"payload of 123 bytes is over the maximum 122"):
        codec.encode(codec.COMMAND, bytes(codec.MAX_PAYLOAD + 1))
    with pytest.raises(ValueError, match=r"\b300\b"):
        codec.encode(codec.RESULT, bytes(300))


@pytest.mark.parametrize("size", [codec.MAX_PAYLOAD + 1, codec.MAX_PAYLOAD + 2])
def test_the_decoder_refuses_a_payload_over_the_maximum(size: int) -> None:
    body = bytes((codec.VERSION, codec.COMMAND)) + b"\x01" * size
    wire = b"\x00" + reference.cobs_stuff(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"
    assert codec.Decoder().feed(wire) == []


def test_a_text_cut_at_40_bytes_stays_valid_utf8() -> None:
    value = "a" + "é" * 20  # 41 bytes: the cut at 40 falls inside the last "é"
    tail = codec.texts(value)
    assert len(tail) <= 41
    assert value.startswith(codec.untexts(tail, 1)[0])


def test_an_unknown_type_is_answered_with_error_unknown_type() -> None:
    answer = codec.check_frame(codec.Frame(codec.VERSION, 0x55, b"\x01"))
    assert answer is not None
    (frame,) = codec.Decoder().feed(answer)
    assert (frame.version, frame.type) == (codec.VERSION, codec.ERROR)
    assert codec.unpack(codec.ERROR, frame.payload) == ((codec.ERR_UNKNOWN_TYPE, 0x55, codec.VERSION), b"")


def test_an_unknown_version_is_answered_with_error_version() -> None:
    answer = codec.check_frame(codec.Frame(9, codec.EVENT, bytes(16)))
    assert answer is not None
    (frame,) = codec.Decoder().feed(answer)
    assert (frame.version, frame.type) == (codec.VERSION, codec.ERROR)
    assert codec.unpack(codec.ERROR, frame.payload) == ((codec.ERR_VERSION, codec.EVENT, codec.VERSION), b"")


def test_known_frames_are_accepted() -> None:
    for kind in codec.FIELDS:
        assert codec.check_frame(codec.Frame(codec.VERSION, kind, b"")) is None


# -- reference model of the decoder ----------------------------------------------------------


def model_frames(stream: bytes) -> list[dict[str, Any]]:
    """What a fresh Decoder must yield from ``stream``, by the specification.

    Every run of bytes ended by a 0x00 (the start of the stream counts as a delimiter) that
    is at most MAX_WIRE bytes long (the decoder's buffer), is valid COBS, decodes to at least
    6 bytes and whose CRC-32 checks is a frame; everything else is thrown away, and the
    unfinished last run waits.
    """
    out = []
    for run in stream.split(b"\x00")[:-1]:
        if not run or len(run) > codec.MAX_WIRE:
            continue
        body = reference.cobs_unstuff(run)
        if body is None or len(body) < 6:
            continue
        if struct.pack("<I", zlib.crc32(body[:-4])) != body[-4:]:
            continue
        out.append({"version": body[0], "type": body[1], "payload": body[2:-4].hex()})
    return out


def crc_ok(frame: codec.Frame) -> bool:
    """The frame's bytes are what a sender with a good CRC would have put on the wire."""
    wire = reference.wire(frame.type, frame.payload, frame.version)
    body = reference.cobs_unstuff(wire[1:-1])
    return body is not None and struct.pack("<I", zlib.crc32(body[:-4])) == body[-4:]


# -- resynchronisation -------------------------------------------------------------------------

frame_types = st.sampled_from(sorted(codec.FIELDS) + [0x00, 0x55, 0xFF])
payloads = st.binary(max_size=codec.MAX_PAYLOAD)


@PROPERTY
@given(garbage=st.binary(max_size=400), kind=frame_types, payload=payloads)
def test_a_good_frame_after_any_garbage_is_received(garbage: bytes, kind: int, payload: bytes) -> None:
    wire = codec.encode(kind, payload)
    decoder = codec.Decoder()
    got = decoder.feed(garbage) + decoder.feed(wire)
    assert got, "the frame after the garbage was lost"
    assert (got[-1].version, got[-1].type, got[-1].payload) == (codec.VERSION, kind, payload)
    # and the frame after it is not lost either
    (again,) = decoder.feed(wire)
    assert again.payload == payload


@PROPERTY
@given(garbage=st.binary(min_size=1, max_size=400), payload=payloads)
def test_garbage_without_delimiter_costs_at_most_the_frame_it_runs_into(garbage: bytes, payload: bytes) -> None:
    # a sender that writes only a trailing delimiter: the garbage joins the frame's run and
    # takes it with it, but the next frame is received
    body_only = codec.encode(codec.EVENT, payload)[1:]
    decoder = codec.Decoder()
    decoder.feed(garbage.replace(b"\x00", b"\x01") + body_only)
    (frame,) = decoder.feed(body_only)
    assert frame.payload == payload


# -- properties ----------------------------------------------------------------------------------


@PROPERTY
@given(data=st.binary(max_size=700))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = codec.cobs_encode(data)
    assert 0 not in encoded
    assert encoded == reference.cobs_stuff(data)
    assert codec.cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + 1 + len(data) // 254


@PROPERTY
@given(version=st.integers(0, 255), kind=st.integers(0, 255), payload=payloads)
def test_encode_decode_round_trip(version: int, kind: int, payload: bytes) -> None:
    wire = codec.encode(kind, payload, version=version)
    assert wire == reference.wire(kind, payload, version)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert len(wire) <= codec.MAX_WIRE
    (frame,) = codec.Decoder().feed(wire)
    assert (frame.version, frame.type, frame.payload) == (version, kind, payload)


@PROPERTY
@given(values=st.lists(st.text(max_size=12), max_size=4))
def test_texts_round_trip(values: list[str]) -> None:
    values = [v for v in values if len(v.encode()) <= 40]
    assert codec.untexts(codec.texts(*values), len(values)) == values


# -- fuzzing the decoder ------------------------------------------------------------------------


def check_feed(stream: bytes, cuts: list[int]) -> None:
    """Feed ``stream`` in pieces: nothing raises, the frames are the model's, each with a good CRC."""
    decoder = codec.Decoder()
    got: list[codec.Frame] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert all(crc_ok(f) for f in got)
    assert all(isinstance(f.payload, bytes) and len(f.payload) <= codec.MAX_WIRE for f in got)
    assert as_dicts(got) == model_frames(stream)


@FUZZ
@given(stream=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_fuzz_decoder_on_random_bytes(stream: bytes, cuts: list[int]) -> None:
    check_feed(stream, [c for c in cuts if c <= len(stream)])


@FUZZ
@given(stream=st.lists(st.sampled_from(b"\x00\x01\x02\xfe\xff"), max_size=400).map(bytes))
def test_fuzz_decoder_on_delimiter_heavy_bytes(stream: bytes) -> None:
    check_feed(stream, [])


valid_frames = st.builds(
    codec.encode,
    st.sampled_from(sorted(codec.FIELDS)),
    st.binary(max_size=40),
)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Valid frames, then a few bit flips, insertions, deletions, truncations and concatenations."""
    stream = bytearray(b"".join(draw(st.lists(valid_frames, min_size=1, max_size=6))))
    for _ in range(draw(st.integers(0, 6))):
        what = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "concat", "repeat"]))
        at = draw(st.integers(0, len(stream)))
        if what == "flip" and stream:
            index = min(at, len(stream) - 1)
            stream[index] ^= 1 << draw(st.integers(0, 7))
        elif what == "insert":
            stream[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif what == "delete":
            del stream[at : at + draw(st.integers(1, 20))]
        elif what == "truncate":
            del stream[at:]
        elif what == "concat":
            stream += draw(valid_frames)[draw(st.integers(0, 3)) :]
        elif what == "repeat":
            stream += stream[at : at + draw(st.integers(1, 60))]
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=6))
    return bytes(stream), cuts


@FUZZ
@given(case=mutated_streams())
def test_fuzz_decoder_on_mutated_streams(case: tuple[bytes, list[int]]) -> None:
    check_feed(*case)


# -- fuzzing payload parsers ----------------------------------------------------------------------


@FUZZ
@given(kind=st.sampled_from(sorted(codec.FIELDS)), payload=st.binary(max_size=codec.MAX_PAYLOAD + 4))
def test_fuzz_unpack(kind: int, payload: bytes) -> None:
    try:
        fields, tail = codec.unpack(kind, payload)
    except ValueError:
        return
    assert codec.pack(kind, *fields, tail=tail) == payload


@FUZZ
@given(payload=st.binary(max_size=40))
def test_fuzz_unpack_event(payload: bytes) -> None:
    try:
        event = codec.unpack_event(payload)
    except ValueError:
        assert len(payload) != struct.calcsize(codec.FIELDS[codec.EVENT])
        return
    assert codec.pack_event(event) == payload


@FUZZ
@given(tail=st.binary(max_size=100), count=st.integers(0, 4))
def test_fuzz_untexts(tail: bytes, count: int) -> None:
    try:
        values = codec.untexts(tail, count)
    except (ValueError, UnicodeError):
        return
    assert len(values) == count
    assert all(isinstance(v, str) for v in values)
