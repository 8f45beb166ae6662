# Golden journal records: the same bytes on MicroPython as on CPython.
import json

from alarmpost import events as ev

with open("tests/vectors/event_records.json") as f:
    vectors = json.load(f)
for vector in vectors:
    event = ev.Event(*vector["fields"])
    assert event.pack().hex() == vector["record"], vector
    assert ev.Event.unpack(bytes.fromhex(vector["record"])) == event
    damaged = bytearray(bytes.fromhex(vector["record"]))
    damaged[0] ^= 1
    assert ev.Event.unpack(bytes(damaged)) is None
    line = event.console_line()
    assert ev.parse_console_line(line) == event
print("OK")
