"""Operator commands from the Pi, carried out on the post.

Loaded when a command arrives and dropped after it, so the code costs no heap
between commands.  The board trusts what the Pi forwards: commands are
authenticated where they enter the system (the monitoring centre's uplink), and
each one here is checked against the post's state before it is carried out.

>>> handle(post, codec.CMD_SILENCE, b"")
(0, b'')
"""

import json
import os

from alarmpost import codec, events, unload


def _clip(text):
    return text.encode()[: codec.MAX_PAYLOAD - 3]


def handle(post, command, args):
    """(result status, result data) for one command."""
    alarm = post.alarm
    if command == codec.CMD_ACKNOWLEDGE:
        return (codec.OK if alarm.acknowledge() else codec.REFUSED), b""
    if command == codec.CMD_SILENCE:
        return (codec.OK if alarm.silence() else codec.REFUSED), b""
    if command == codec.CMD_RESET:
        return (codec.OK if alarm.reset(events.ZONE_OPERATOR) else codec.REFUSED), b""
    if command == codec.CMD_TEST_PATTERN:
        return (codec.OK if post.start_test(events.ZONE_OPERATOR) else codec.REFUSED), b""
    if command == codec.CMD_STATUS:
        return codec.OK, status(post)
    if command == codec.CMD_SELF_TEST:
        if args != b"read":  # "read": only the answer so far ("pending" until the chirp is over)
            post.check_siren()
        return (codec.FAILED if post.faults else codec.OK), self_test(post)
    if command == codec.CMD_CONFIG_SET:
        return config_set(post, args)
    return codec.UNKNOWN_COMMAND, b""


def status(post):
    volts = post.supply.volts if post.supply is not None and post.supply.volts is not None else 0
    return json.dumps(
        {
            "state": post.alarm.state,
            "siren": post.alarm.siren_allowed,
            "faults": len(post.faults),
            "seq": post.seq,
            "boot": post.boot_count,
            "supply_cv": int(volts * 100),
        }
    ).encode()


def self_test(post):
    """What the self-test asks of the board: troubles, the siren check, the journal, the supply."""
    volts = post.supply.volts if post.supply is not None and post.supply.volts is not None else 0
    return json.dumps(
        {
            "faults": len(post.faults),
            "check": post.siren.check,
            "journal_pct": post.journal.fill_pct(),
            "supply_cv": int(volts * 100),
        },
        separators=(",", ":"),
    ).encode()


def config_set(post, args):
    """``key=json value``: checked against the floors for a remote change, then like config.json;
    written atomically, used from the next boot.

    The siren and the strobe have floors for a change by command (docs/alarm-core.md): only
    the config.json written at the post may go below them.  They are checked before the
    settings schema is loaded, so a refusal costs no heap.
    """
    try:
        key, _, raw = args.decode().partition("=")
        value = json.loads(raw)
    except (ValueError, UnicodeError) as exc:
        return codec.BAD_ARGS, _clip("not key=json value: %s" % exc)
    least = {"siren_cutoff_s": 180, "siren_duty_pct": 25, "strobe_duty_pct": 25}.get(key)
    if least and type(value) in (int, float) and value < least:
        return codec.BAD_ARGS, _clip("%s: %s is below the minimum %d for a remote change" % (key, value, least))
    import gc

    # The settings schema is the largest thing the firmware loads, on a heap the alarm tasks
    # share: collect first so it gets whole free blocks, and once more if it still did not fit.
    for attempt in (1, 2):
        gc.collect()
        try:
            from alarmpost import settings

            return _write_config(post, settings, key, value)
        except MemoryError:
            if attempt == 2:
                raise
        finally:
            unload("settings")


def _write_config(post, settings, key, value):
    current, error = settings.load_json(post.path("config.json"))
    if error:
        current = {}  # a broken file is replaced by a checked one
    current[key] = value
    errors = settings.check_config(current, post.board)[1]
    if errors:
        return codec.BAD_ARGS, _clip("; ".join(errors))
    temporary = post.path("config.tmp")
    with open(temporary, "w") as f:
        json.dump(current, f)
    os.rename(temporary, post.path("config.json"))
    return codec.OK, b"applies at the next boot"
