"""Board files and tunable config: one schema, checked on the host and on the board.

A board file (``boards/<name>.json``, copied to the board as ``board.json``) says
where things are wired; ``config.json`` holds the tunables.  Both are JSON because
every MicroPython port reads it.  Fields are named by dotted path
(``pins.button.pin``) in values and in error messages.

On the host, any error refuses the file.  On the board, a bad field falls back to
its safe default (a bad pin disables that device) and the error is reported as a
trouble event, so a typo never stops the alarm from working.

>>> values, errors = check_config({"siren_cutoff_s": 5000})
>>> errors
['siren_cutoff_s: 5000 is above the maximum 1200']
>>> values["siren_cutoff_s"]
180
"""

import json

REQUIRED = "required"
_MISSING = object()

LEVELS = ("high", "low")
PULLS = ("up", "down", "none")
RECORD_BYTES = 20  # events.RECORD_SIZE, not imported: settings is loaded before anything else
JOURNAL_SEGMENTS = 4  # Journal.min_segments: one a ring of the journal, and one to turn over

# One field a line: dotted path, kind, default, minimum, maximum.  Kinds: "int",
# "num", "str" (min/max are its length), "pin" (its range comes from the board's
# gpio_max), "level", "pull".  Kept as text and read a line at a time, so the
# schema costs the board a few hundred bytes of heap rather than a table of tuples.
_BOARD = """
name str required 1 32
mcu str required 1 32
heap_bytes int required 16384 8388608
gpio_max int required 1 255
journal_bytes int 65536 1024 16777216
fs_block_bytes int 4096 128 65536
supply_full_scale_v num 18.0 1.0 60.0
strobe_pwm_hz int 1000 50 40000
siren_min_hz int 400 50 20000
siren_max_hz int 4000 50 20000
uart.id int 0 0 3
uart.tx pin required
uart.rx pin required
uart.baud int 115200 9600 1000000
pins.supply_adc.pin pin none
"""
_INPUT_PINS = ("button", "key_switch", "tamper", "siren_sense")
_OUTPUT_PINS = ("strobe", "siren", "status_led", "alarm_line")

_CONFIG = """
glitch_ms int 3 1 20
debounce_ms int 50 5 500
long_press_ms int 2000 300 20000
stuck_ms int 60000 2000 3600000
switch_debounce_ms int 50 5 1000
siren_cutoff_s int 180 5 1200
siren_low_hz int 700 50 20000
siren_high_hz int 1600 50 20000
siren_sweep_ms int 1200 100 10000
siren_step_ms int 40 10 500
siren_duty_pct int 50 1 50
strobe_duty_pct int 100 1 100
test_pattern_s int 10 1 120
selftest_h int 24 0 168
supply_poll_ms int 1000 50 60000
supply_confirm_ms int 5000 0 600000
ac_loss_v num 13.0 5.0 50.0
low_battery_v num 11.5 5.0 50.0
supply_hysteresis_v num 0.3 0.05 5.0
journal_records int 200 8 256
wdt_timeout_ms int 5000 500 8000
link_heartbeat_ms int 1000 100 5000
link_timeout_ms int 2500 500 30000
"""


def _read_spec(text):
    for line in text.split("\n"):
        if not line:
            continue
        parts = line.split() + ["0", "0"]
        path, kind, default, low, high = parts[:5]
        number = float if kind == "num" else int
        if default == REQUIRED:
            pass
        elif default == "none":
            default = None
        elif kind in ("int", "num", "pin"):
            default = number(default)
        yield path, kind, default, number(low), number(high)


def board_fields():
    """(path, kind, default, minimum, maximum) for every board-file field."""
    yield from _read_spec(_BOARD)
    for name in _INPUT_PINS:
        yield "pins.%s.pin" % name, "pin", None, 0, 0
        yield "pins.%s.active" % name, "level", "low", 0, 0
        yield "pins.%s.pull" % name, "pull", "up", 0, 0
    for name in _OUTPUT_PINS:
        yield "pins.%s.pin" % name, "pin", None, 0, 0
        yield "pins.%s.active" % name, "level", "high", 0, 0


def config_fields():
    """(path, kind, default, minimum, maximum) for every config field."""
    return _read_spec(_CONFIG)


def _lookup(data, path):
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _leaf_paths(data, prefix=""):
    for key in data:
        path = prefix + key
        if isinstance(data[key], dict):
            yield from _leaf_paths(data[key], path + ".")
        else:
            yield path


def _problem(value, kind, low, high):
    """What is wrong with one value, or None."""
    if (value is True or value is False) and kind in ("int", "pin", "num"):
        return "%r is a true/false value, expected a number" % (value,)
    if kind in ("int", "pin"):
        if not isinstance(value, int):
            return "%r is not a whole number" % (value,)
    elif kind == "num":
        if not isinstance(value, (int, float)):
            return "%r is not a number" % (value,)
    elif kind == "str":
        if not isinstance(value, str):
            return "%r is not text" % (value,)
        if not low <= len(value) <= high:
            return "%r must be %d to %d characters" % (value, low, high)
        return None
    elif kind == "level":
        return None if value in LEVELS else "%r is not one of %s" % (value, ", ".join(LEVELS))
    elif kind == "pull":
        return None if value in PULLS else "%r is not one of %s" % (value, ", ".join(PULLS))
    if kind != "pin":
        if value < low:
            return "%s is below the minimum %s" % (value, low)
        if value > high:
            return "%s is above the maximum %s" % (value, high)
    return None


def check(fields, data):
    """Check ``data`` against ``fields``: (values by dotted path, list of errors).

    Every field gets a value: the given one if valid, else its default.  A missing
    required field gets None.  Unknown fields are errors (they are usually typos).
    """
    values = {}
    errors = []
    if not isinstance(data, dict):
        return {path: (None if d == REQUIRED else d) for path, _, d, _, _ in fields}, [
            "top level: expected a JSON object"
        ]
    for path, kind, default, low, high in fields:
        fallback = None if default == REQUIRED else default
        value = _lookup(data, path)
        if value is _MISSING or (value is None and default is None):
            if default == REQUIRED:
                errors.append(path + ": missing")
            values[path] = fallback
            continue
        problem = _problem(value, kind, low, high)
        if problem:
            errors.append(path + ": " + problem)
            values[path] = fallback
        else:
            values[path] = value
    for path in _leaf_paths(data):
        if path not in values:
            errors.append(path + ": unknown field")
    return values, errors


def check_board(data):
    """Check a board file: field values, pin ranges and pins wired twice."""
    values, errors = check(board_fields(), data)
    gpio_max = values["gpio_max"]
    owner = {}
    for path, kind, _, _, _ in board_fields():
        pin = values[path]
        if kind != "pin" or pin is None:
            continue
        if gpio_max is not None and not 0 <= pin <= gpio_max:
            errors.append("%s: pin %d is outside 0..%d" % (path, pin, gpio_max))
            values[path] = None
        elif pin in owner:
            errors.append("%s: pin %d is already used by %s" % (path, pin, owner[pin]))
            values[path] = None
        else:
            owner[pin] = path
    if values["siren_min_hz"] > values["siren_max_hz"]:
        errors.append("siren_min_hz: %d is above siren_max_hz" % values["siren_min_hz"])
        _use_defaults(board_fields(), values, ("siren_min_hz", "siren_max_hz"))
    least = (JOURNAL_SEGMENTS + 1) * values["fs_block_bytes"]
    if values["journal_bytes"] < least:
        errors.append(
            "journal_bytes: %d is less than %d blocks of fs_block_bytes (%d)"
            % (values["journal_bytes"], JOURNAL_SEGMENTS + 1, least)
        )
        _use_defaults(board_fields(), values, ("journal_bytes", "fs_block_bytes"))
    return values, errors


def journal_segments(records, journal_bytes, block_bytes):
    """Segments of ``records`` events the journal keeps in ``journal_bytes``, one left free for rewrites."""
    per_segment = -(-records * RECORD_BYTES // block_bytes) * block_bytes
    return journal_bytes // per_segment - 1


def check_config(data, board=None):
    """Check a config; with a board's values, also check the siren fits its sounder and the journal its flash."""
    values, errors = check(config_fields(), data)
    if board is not None:
        for path in ("siren_low_hz", "siren_high_hz"):
            hz = values[path]
            if not board["siren_min_hz"] <= hz <= board["siren_max_hz"]:
                errors.append(
                    "%s: %d Hz is outside the board's sounder range %d..%d Hz"
                    % (path, hz, board["siren_min_hz"], board["siren_max_hz"])
                )
                values[path] = min(max(hz, board["siren_min_hz"]), board["siren_max_hz"])
    for low, high in (("siren_low_hz", "siren_high_hz"), ("low_battery_v", "ac_loss_v"), ("long_press_ms", "stuck_ms")):
        if values[low] >= values[high]:
            errors.append("%s: must be below %s" % (low, high))
            _use_defaults(config_fields(), values, (low, high))
    if board is not None:
        segments = journal_segments(values["journal_records"], board["journal_bytes"], board["fs_block_bytes"])
        if segments < JOURNAL_SEGMENTS:
            errors.append(
                "journal_records: %d a segment leave room for %d segments in the board's journal_bytes (%d); "
                "at least %d are needed"
                % (values["journal_records"], segments, board["journal_bytes"], JOURNAL_SEGMENTS)
            )
            _use_defaults(config_fields(), values, ("journal_records",))
    if values["link_timeout_ms"] < 2 * values["link_heartbeat_ms"]:
        errors.append("link_timeout_ms: must be at least twice link_heartbeat_ms")
        _use_defaults(config_fields(), values, ("link_heartbeat_ms", "link_timeout_ms"))
    return values, errors


def _use_defaults(fields, values, paths):
    for name, _, default, _, _ in fields:
        if name in paths:
            values[name] = default


def load_json(path):
    """(parsed data, error or None); a missing file reads as an empty object."""
    try:
        with open(path) as f:
            return json.load(f), None
    except OSError:
        return {}, None
    except ValueError as exc:
        return {}, "%s: not valid JSON (%s)" % (path, exc)
