# Golden serial frames: the codec on MicroPython produces and accepts the same bytes as the
# specification (tests/vectors/serial_frames.json, written without the codec).
import json

from alarmpost import codec
from alarmpost import events as ev

with open("tests/vectors/serial_frames.json") as f:
    vectors = json.load(f)


def h(text):
    return bytes.fromhex(text)


def frames_of(decoder, data):
    return [{"version": x.version, "type": x.type, "payload": x.payload.hex()} for x in decoder.feed(data)]


for name, value in vectors["constants"].items():
    assert getattr(codec, name) == value, name
assert list(codec.STATES) == vectors["states"]

# every frame type: payload pack/unpack, texts, encode, decode
kinds = set()
for v in vectors["frames"]:
    kinds.add(v["type"])
    payload, tail, wire = h(v["payload"]), h(v["tail"]), h(v["wire"])
    assert codec.pack(v["type"], *v["fields"], tail=tail) == payload, v["name"]
    fields, got_tail = codec.unpack(v["type"], payload)
    assert list(fields) == v["fields"] and got_tail == tail, v["name"]
    if "texts" in v:
        assert codec.texts(*v["texts"]) == tail, v["name"]
        assert codec.untexts(tail, len(v["texts"])) == v["texts"], v["name"]
    if "event" in v:
        event = ev.Event(*v["event"])
        assert codec.pack_event(event) == payload, v["name"]
        assert codec.unpack_event(payload) == event, v["name"]
    assert codec.encode(v["type"], payload) == wire, v["name"]
    assert len(wire) <= codec.MAX_WIRE
    assert 0 not in wire[1:-1] and wire[0] == 0 and wire[-1] == 0
    assert codec.cobs_decode(wire[1:-1]) == h(v["body"]) + h(v["crc"]), v["name"]
    expected = [{"version": v["version"], "type": v["type"], "payload": v["payload"]}]
    assert frames_of(codec.Decoder(), wire) == expected, v["name"]
    decoder = codec.Decoder()
    got = []
    for i in range(len(wire)):
        got += frames_of(decoder, wire[i : i + 1])
    assert got == expected, v["name"]
    if v["type"] == codec.ERROR:
        assert codec.error(v["fields"][0], v["fields"][1]) == wire, v["name"]
assert sorted(kinds) == sorted(codec.FIELDS), "a frame type without a vector"

# refusals: what check_frame answers
for v in vectors["refusals"]:
    answer = codec.check_frame(codec.Frame(v["version"], v["type"], h(v["payload"])))
    if v["answer"] is None:
        assert answer is None, v["name"]
    else:
        assert answer == h(v["answer"]), v["name"]

for v in vectors["bad_payloads"]:
    try:
        codec.unpack(v["type"], h(v["payload"]))
    except ValueError:
        pass
    else:
        raise AssertionError("unpack accepted %s %s" % (v["kind"], v["payload"]))
    if v["type"] == codec.EVENT:
        try:
            codec.unpack_event(h(v["payload"]))
        except ValueError:
            pass
        else:
            raise AssertionError("unpack_event accepted %s" % v["payload"])

try:
    codec.encode(codec.COMMAND, bytes(codec.MAX_PAYLOAD + 1))
except ValueError as exc:
    assert str(codec.MAX_PAYLOAD + 1) in str(exc)
else:
    raise AssertionError("encode accepted an oversized payload")

# COBS
for v in vectors["cobs"]:
    assert codec.cobs_encode(h(v["decoded"])) == h(v["encoded"]), v["name"]
    assert codec.cobs_decode(h(v["encoded"])) == h(v["decoded"]), v["name"]
for v in vectors["cobs_decode_only"]:
    decoded = codec.cobs_decode(h(v["encoded"]))
    if v["decoded"] is None:
        assert decoded is None, v["name"]
    else:
        assert decoded == h(v["decoded"]), v["name"]

# streams: whole, byte by byte, and in chunks of 7
for v in vectors["streams"]:
    stream = h(v["stream"])
    assert frames_of(codec.Decoder(), stream) == v["frames"], v["name"]
    for size in (1, 7):
        decoder = codec.Decoder()
        got = []
        for i in range(0, len(stream), size):
            got += frames_of(decoder, stream[i : i + size])
        assert got == v["frames"], v["name"]
print("OK")
