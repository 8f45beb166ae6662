"""The MQTT contract between a post and the monitoring centre: topics, payloads, commands.

Everything here is defined once and used by the daemon, the reference centre, the
benchmarks and the tests; ``docs/asyncapi.yaml`` is generated from it
(``python -m edge_daemon.contract > docs/asyncapi.yaml``) and a test checks that
the file and this module agree.

Every post publishes under ``alarmpost/v1/{site}/{post}/``:

=============  =======  ========  ===================================================
channel        QoS      retained  what
=============  =======  ========  ===================================================
availability   1        yes       ``online``; ``offline`` (Last Will); ``stopped``
state          1        yes       alarm state, outputs, faults, link, versions
events         1        no        every event, once per id after dedup, in order
results        1        no        the answer to a command (MQTT 5 correlation data)
audit          1        no        every command received and its outcome
health         0        no        metrics for the fleet's dashboards
commands       1        no        centre → post, signed (HMAC-SHA256)
receipts       1        no        centre → post, signed: the events and audit records it has recorded
requests       1        no        unsigned ``status`` or ``self_test`` (Home Assistant)
snapshots      1        no        alarm, pre-alarm and asked-for pictures (JPEG, in pieces)
stream         0        no        the live stream's frames (JPEG, in pieces)
content        1        yes       centre → post, the gate WiFi's safety content (Ed25519-signed)
portal         1        no        the gate WiFi's aggregate statistics (no personal data)
=============  =======  ========  ===================================================

>>> Topics("school-12", "gate-north").events
'alarmpost/v1/school-12/gate-north/events'
>>> parse_topic("alarmpost/v1/school-12/gate-north/state")
('school-12', 'gate-north', 'state')
>>> centre_filter("events")
'alarmpost/v1/+/+/events'
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonschema

from edge_daemon.config import BOARD_NAME

API = "v1"
ROOT = "alarmpost/" + API
ID_PATTERN = f"^{BOARD_NAME.pattern}$"  # site and post ids: the config's rule for board names
_ID = re.compile(ID_PATTERN)

ONLINE, OFFLINE, STOPPED = "online", "offline", "stopped"
ALARM_STATES = ("idle", "alarm", "acknowledged", "silenced", "unknown")
QUALIFIERS = {1: "new", 3: "restore", 6: "status"}  # Contact ID event qualifiers

# Commands the centre may send, and whether each may touch outputs or the alarm.
# Every command is signed; these are also the ones the Home Assistant buttons may never send.
COMMANDS = (
    "acknowledge",
    "silence",
    "reset",
    "test",
    "self_test",
    "status",
    "snapshot",
    "stream",
    "stream_stop",
    "config_set",
    "replay",
)
SAFETY_COMMANDS = ("acknowledge", "silence", "reset", "test", "config_set")
# What may be asked for unsigned on ``requests`` (Home Assistant's buttons): they touch neither
# the outputs, nor the alarm, nor the camera.
UNSIGNED_COMMANDS = ("status", "self_test")

RESULT_STATUSES = (
    "ok",  # carried out
    "refused",  # not possible in the post's present state (e.g. reset while idle)
    "bad_args",  # the arguments were wrong; detail says how
    "unknown_command",
    "failed",  # tried and failed (e.g. a self-test found faults)
    "timeout",  # the board did not answer
    "link_down",  # the serial link to the board is down: not sent
    "unavailable",  # the post has no such part (e.g. no camera)
    "unauthenticated",  # missing, forged, expired or replayed signature: nothing was done
    "malformed",  # the payload was not a command; detail says why
)
AUTH_VERDICTS = ("valid", "unsigned", "forged", "expired", "replayed", "malformed", "not_required")

SIGNATURE_ALGORITHM = "hmac-sha256"
SIGNATURE_CONTEXT = b"alarmpost-command-v1"
COMMAND_WINDOW_S = 30  # a command's timestamp must be within this many seconds of the post's clock
NONCE_PATTERN = r"^[0-9a-f]{32}$"

# -- JSON Schemas (draft-07, as AsyncAPI 3 embeds them) -------------------------------------

_UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
_TIME = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601 with milliseconds"}
_ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN, "maxLength": 64}
_COUNT = {"type": "integer", "minimum": 0}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A closed JSON object schema: ``required`` keys must be there, ``optional`` ones may."""
    properties = dict(required, **(optional or {}))
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
        **extra,
    }


AVAILABILITY_SCHEMA = {
    "type": "string",
    "enum": [ONLINE, OFFLINE, STOPPED],
    "description": "online: the daemon is connected; offline: it vanished (Last Will); stopped: shut down cleanly",
}

EVENT_SCHEMA = _object(
    {
        "id": dict(_UUID, description="unique and stable across resends: the centre deduplicates on it"),
        "site": _ID_SCHEMA,
        "post": _ID_SCHEMA,
        "n": {"type": "integer", "minimum": 1, "description": "the post's event number: +1 per event, per store"},
        "store": dict(_UUID, description="the post's event store; n starts again at 1 when it changes"),
        "source": {"type": "string", "enum": ["board", "daemon"]},
        "boot": {"type": "integer", "minimum": 0, "maximum": 65535},
        "seq": {"type": "integer", "minimum": 0, "description": "the source's own sequence number"},
        "code": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "Contact ID event code (3 digits)"},
        "qualifier": {"type": "string", "enum": list(QUALIFIERS.values())},
        "zone": {"type": "integer", "minimum": 0, "maximum": 255},
        "value": {"type": "integer", "minimum": 0, "maximum": 65535},
        "contact_id": {
            "type": "string",
            "pattern": "^[136][0-9]{3,5} [0-9]{2} [0-9]{3}$",
            "description": "Contact ID QXYZ GG CCC: qualifier (1 new, 3 restore, 6 status), code, group 01, zone",
        },
        "text": {"type": "string"},
        "board_time": _object(
            {"boot": {"type": "integer", "minimum": 0}, "uptime_ms": _COUNT},
            description="the board's clock: milliseconds since that boot (the board has no calendar clock)",
        ),
        "pi_time": dict(_TIME, description="when the Pi stored the event"),
        "sent_at": dict(_TIME, description="when this copy was published"),
        "replayed": {"type": "boolean", "description": "true when sent again on the centre's replay request"},
    }
)

STATE_SCHEMA = _object(
    {
        "alarm": {"type": "string", "enum": list(ALARM_STATES)},
        "alarm_line": {"type": ["boolean", "null"], "description": "the hard-wired line; null without GPIO"},
        "outputs": _object(
            {
                "siren": {"type": ["boolean", "null"]},
                "strobe": {"type": ["boolean", "null"]},
                "testing": {"type": ["boolean", "null"]},
            }
        ),
        "faults": {"type": ["integer", "null"], "minimum": 0},
        "link": {"type": "string", "enum": ["up", "down", "unknown"]},
        "board": _object(
            {
                "name": {"type": ["string", "null"]},
                "boot": {"type": ["integer", "null"]},
                "seq": {"type": ["integer", "null"]},
            }
        ),
        "versions": _object(
            {
                "api": {"type": "string", "const": API},
                "daemon": {"type": "string"},
                "firmware": {"type": ["string", "null"]},
                "protocol": {"type": "integer"},
            }
        ),
        "events": _object(
            {
                "store": _UUID,
                "last_n": dict(_COUNT, description="the newest event's n: a centre that has less asks for a replay"),
                "unconfirmed": dict(_COUNT, description="events the centre has not yet confirmed (receipts)"),
                "oldest_unconfirmed_s": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "how long the oldest unconfirmed event has waited; null when none waits",
                },
                "trouble": {
                    "type": "boolean",
                    "description": "an event has waited longer than uplink.confirm_trouble_s (Contact ID 354)",
                },
            }
        ),
        "updated_at": _TIME,
    }
)

STREAM_MAX_S = 600

# Arguments per command: (schema, required?).  Commands not listed take none.
_ARGS: dict[str, tuple[dict[str, Any], bool]] = {
    "config_set": (_object({"key": {"type": "string", "pattern": "^[a-z_]{1,40}$"}, "value": {}}), True),
    "replay": (
        _object({"from": {"type": "integer", "minimum": 1}}, {"count": {"type": "integer", "minimum": 1}}),
        True,
    ),
    "stream": (_object({}, {"seconds": {"type": "integer", "minimum": 1, "maximum": STREAM_MAX_S}}), False),
}


def _args_rule(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    then: dict[str, Any] = {"properties": {"args": schema}}
    if required:
        then["required"] = ["args"]
    return {"if": {"properties": {"command": {"const": name}}}, "then": then}


COMMAND_SCHEMA: dict[str, Any] = dict(
    _object(
        {"command": {"type": "string", "enum": list(COMMANDS)}},
        {
            "args": {"type": "object"},
            "operator": {"type": "string", "maxLength": 64, "description": "who asked, for the audit"},
        },
    ),
    allOf=[_args_rule(name, schema, required) for name, (schema, required) in _ARGS.items()],
)

COMMAND_HEADERS_SCHEMA = _object(
    {
        "alg": {"type": "string", "const": SIGNATURE_ALGORITHM},
        "ts": {
            "type": "string",
            "pattern": "^[0-9]{1,12}$",
            "maxLength": 12,
            "description": "unix seconds when signed",
        },
        "nonce": {
            "type": "string",
            "pattern": NONCE_PATTERN,
            "maxLength": 32,
            "description": "128 random bits, hex; never reused",
        },
        "sig": {"type": "string", "pattern": "^[0-9a-f]{64}$", "maxLength": 64, "description": "HMAC-SHA256, hex"},
    }
)

RESULT_SCHEMA = _object(
    {
        "command": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": list(RESULT_STATUSES)},
        "detail": {"type": "string"},
        "at": _TIME,
    },
    {"data": {"description": "what the command returned (status JSON, replay counts...)"}},
)

OUTBOX_KINDS = ("events", "audit")  # what a receipt confirms, each by its own numbers n
RECEIPT_MAX_RANGES = 256
_RANGES = {
    "type": "array",
    "maxItems": RECEIPT_MAX_RANGES,
    "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 1}},
    "description": "[first, last] ranges of n, first <= last, each number recorded by the centre",
}

RECEIPT_SCHEMA = _object(
    {
        "store": dict(_UUID, description="the post's event store the numbers belong to"),
        "events": dict(_RANGES, description="event numbers n the centre has durably recorded: [first, last] ranges"),
        "audit": dict(_RANGES, description="audit record numbers n the centre has durably recorded"),
        "at": _TIME,
    }
)

AUDIT_SCHEMA = _object(
    {
        "id": _UUID,
        "n": {"type": "integer", "minimum": 1},
        "store": _UUID,
        "at": _TIME,
        "command": {"type": ["string", "null"]},
        "operator": {"type": ["string", "null"]},
        "nonce": {"type": ["string", "null"]},
        "auth": {"type": "string", "enum": list(AUTH_VERDICTS)},
        "status": {"type": "string", "enum": list(RESULT_STATUSES)},
        "detail": {"type": "string"},
        "via": {"type": "string", "enum": ["commands", "homeassistant"]},
    }
)

REQUEST_SCHEMA = {
    "type": "string",
    "enum": list(UNSIGNED_COMMANDS),
    "description": "a harmless command anyone allowed by the broker's ACL may ask for, unsigned",
}

PICTURE_KINDS = ("alarm", "pre", "live", "snapshot")

CHUNK_SCHEMA = {
    "type": "string",
    "format": "binary",
    "description": "one piece of a JPEG frame; the pieces of a frame, in order, make the JPEG whose SHA-256 is sha256",
}

CHUNK_HEADERS_SCHEMA = _object(
    {
        "frame": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9]{1,10}$", "description": "camera run and seq"},
        "kind": {
            "type": "string",
            "enum": list(PICTURE_KINDS),
            "description": "alarm: the first picture after a press; pre: before it; live: the stream; snapshot: asked",
        },
        "seq": {"type": "string", "pattern": "^[0-9]{1,10}$", "description": "the frame's number in its camera run"},
        "captured": dict(_TIME, description="when the frame was captured (the Pi's clock)"),
        "alarm": {"type": "string", "description": "the id of the event that raised the alarm, or empty"},
        "chunk": {"type": "string", "pattern": "^[0-9]{1,6}$", "description": "this piece's index, from 0"},
        "chunks": {"type": "string", "pattern": "^[1-9][0-9]{0,5}$", "description": "how many pieces the frame has"},
        "size": {"type": "string", "pattern": "^[1-9][0-9]{0,9}$", "description": "the whole frame's bytes"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "maxLength": 64},
    }
)

HEALTH_SCHEMA = _object(
    {
        "at": _TIME,
        "uptime_s": {"type": "number", "minimum": 0},
        "backlog": _COUNT,
        "oldest_pending_s": {"type": ["number", "null"], "minimum": 0},
        "connects": _COUNT,
        "published": _COUNT,
        "bad_receipts": dict(_COUNT, description="receipts refused since the daemon started: forged, malformed..."),
        "link": {"type": "object", "additionalProperties": {"type": "integer"}},
        "store_bytes": _COUNT,
        "disk_free_bytes": _COUNT,
        "cpu_temp_c": {"type": ["number", "null"]},
        "load_1m": {"type": "number", "minimum": 0},
    }
)


# -- the gate WiFi: safety content from the centre, statistics back -------------------------
#
# The centre publishes a signed content bundle, retained, on each post's ``content``: an
# envelope whose ``bundle`` is the base64 of the bundle's exact JSON bytes and whose
# ``signature`` is Ed25519 over CONTENT_SIGNATURE_CONTEXT followed by those bytes
# (captive_portal.content signs, verifies and shows it).

CONTENT_FORMAT = "alarmpost-content-v1"
CONTENT_SIGNATURE_CONTEXT = CONTENT_FORMAT.encode() + b"\n"
CONTENT_LANGS = ("zh", "en")  # zh required, en optional (falls back to zh)
CONTENT_MAX_ITEMS = 50
CONTENT_IMAGE_MAX_BYTES = 512 * 1024  # one image, decoded
CONTENT_IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}  # media type -> extension
ITEM_ID_PATTERN = "^[a-z0-9][a-z0-9-]{0,63}$"
BUNDLE_ID_PATTERN = "^[A-Za-z0-9._-]{1,64}$"
_BASE64 = "^[A-Za-z0-9+/]*={0,2}$"
_ED25519_SIGNATURE = "^[A-Za-z0-9+/]{86}==$"  # 64 bytes


def _plain_text(max_length: int, what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "description": f"{what}: plain text, shown exactly as written (no HTML, no control characters)",
    }


def _in_languages(schema: dict[str, Any]) -> dict[str, Any]:
    return _object({"zh": schema}, {"en": schema}, description="Simplified Chinese; English falls back to it")


_PARAGRAPHS = {"type": "array", "maxItems": 30, "items": _plain_text(2000, "one paragraph")}
_VALID_TIME = {"type": ["string", "null"], "format": "date-time"}

CONTENT_IMAGE_SCHEMA = dict(
    _object(
        {
            "type": {"type": "string", "enum": list(CONTENT_IMAGE_TYPES)},
            "data": {
                "type": "string",
                "pattern": _BASE64,
                "description": f"base64 of the image file; at most {CONTENT_IMAGE_MAX_BYTES} bytes decoded,"
                " and its first bytes must say the type",
            },
            "alt": _in_languages(_plain_text(200, "what the image shows")),
        }
    ),
    type=["object", "null"],
)

CONTENT_ITEM_SCHEMA = _object(
    {
        "id": {"type": "string", "pattern": ITEM_ID_PATTERN, "description": "unique in the bundle; counts use it"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 100, "description": "higher is shown first"},
        "pinned": {"type": "boolean", "description": "an urgent notice: shown above everything, marked urgent"},
        "title": _in_languages(_plain_text(120, "the heading")),
        "body": _in_languages(_PARAGRAPHS),
    },
    {
        "valid_from": dict(_VALID_TIME, description="shown from this time (ISO 8601 with a time zone); null: now"),
        "valid_until": dict(_VALID_TIME, description="shown until this time (exclusive); null: no end"),
        "image": CONTENT_IMAGE_SCHEMA,
    },
)

CONTENT_BUNDLE_SCHEMA = _object(
    {
        "id": {"type": "string", "pattern": BUNDLE_ID_PATTERN, "description": "the centre's name for the bundle"},
        "version": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**53 - 1,
            "description": "higher than every bundle before it: a post refuses a lower or equal version"
            " (unless identical); 0 is the post's built-in default",
        },
        "issued": dict(_TIME, description="when the centre made the bundle"),
        "items": {"type": "array", "maxItems": CONTENT_MAX_ITEMS, "items": CONTENT_ITEM_SCHEMA},
    },
    description="The bundle inside a content envelope, as JSON (UTF-8)",
)

CONTENT_ENVELOPE_SCHEMA = _object(
    {
        "format": {"type": "string", "const": CONTENT_FORMAT},
        "bundle": {
            "type": "string",
            "minLength": 4,
            "pattern": _BASE64,
            "contentEncoding": "base64",
            "contentMediaType": "application/json",
            "description": "base64 of the bundle's JSON bytes (see components/schemas/contentBundle)",
        },
        "signature": {
            "type": "string",
            "pattern": _ED25519_SIGNATURE,
            "contentEncoding": "base64",
            "description": f"base64 of the Ed25519 signature, by the centre's content key, over"
            f" '{CONTENT_FORMAT}' LF and then the bundle's bytes",
        },
    }
)

PORTAL_SCHEMA = _object(
    {
        "time": dict(_TIME, description="the end of the period"),
        "period_s": dict(_COUNT, description="how many seconds the counts cover"),
        "joins": dict(_COUNT, description="phones that opened the portal"),
        "acceptances": dict(_COUNT, description="phones that accepted the terms and went online"),
        "impressions": {
            "type": "object",
            "propertyNames": {"pattern": ITEM_ID_PATTERN},
            "additionalProperties": _COUNT,
            "description": "pages shown per content item id",
        },
        "active_sessions": dict(_COUNT, description="phones online at the end of the period"),
        "content_version": dict(_COUNT, description="the content bundle in use (0: the built-in default)"),
    },
    description="aggregate counts only: nothing about any one phone or person",
)

SELFTEST_STATUSES = ("pass", "fail", "skip")
SELFTEST_SCHEMA = _object(
    {
        "time": dict(_TIME, description="when the self-test started"),
        "trigger": {"type": "string", "enum": ["technician", "periodic"], "description": "who started it"},
        "result": {"type": "string", "enum": ["pass", "fail"], "description": "fail: at least one step failed"},
        "duration_s": {"type": "number", "minimum": 0},
        "steps": {
            "type": "array",
            "maxItems": 64,
            "items": _object(
                {
                    "name": {"type": "string", "pattern": "^[a-z_]{1,32}$"},
                    "status": {"type": "string", "enum": list(SELFTEST_STATUSES)},
                    "detail": {
                        "type": "string",
                        "maxLength": 500,
                        "description": "what was found; on a fail, what to check",
                    },
                }
            ),
        },
    },
    description="one self-test of the post, each step's verdict: the technician's at the post, or the daemon's own",
)


@dataclass(frozen=True)
class Channel:
    """One subtopic of a post: who sends on it, how, and what its payload looks like."""

    name: str
    sender: str  # "post" or "centre"
    qos: int
    retained: bool
    content_type: str
    schema: dict[str, Any]
    summary: str
    headers: dict[str, Any] | None = None


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel("availability", "post", 1, True, "text/plain", AVAILABILITY_SCHEMA, "Is the post's daemon connected?"),
        Channel("state", "post", 1, True, "application/json", STATE_SCHEMA, "The post's live state, newest first."),
        Channel("events", "post", 1, False, "application/json", EVENT_SCHEMA, "Every event of the post, in order."),
        Channel("results", "post", 1, False, "application/json", RESULT_SCHEMA, "The answer to one command."),
        Channel("audit", "post", 1, False, "application/json", AUDIT_SCHEMA, "Each command received and its outcome."),
        Channel("health", "post", 0, False, "application/json", HEALTH_SCHEMA, "Metrics of the post's daemon."),
        Channel(
            "commands",
            "centre",
            1,
            False,
            "application/json",
            COMMAND_SCHEMA,
            "A signed command from the centre.",
            COMMAND_HEADERS_SCHEMA,
        ),
        Channel(
            "receipts",
            "centre",
            1,
            False,
            "application/json",
            RECEIPT_SCHEMA,
            "What the centre has durably recorded, signed: only this takes an event out of the post's outbox.",
            COMMAND_HEADERS_SCHEMA,
        ),
        Channel("requests", "homeassistant", 1, False, "text/plain", REQUEST_SCHEMA, "A status or self-test request."),
        Channel(
            "snapshots",
            "post",
            1,
            False,
            "image/jpeg",
            CHUNK_SCHEMA,
            "Alarm, pre-alarm and requested pictures, in pieces.",
            CHUNK_HEADERS_SCHEMA,
        ),
        Channel(
            "stream",
            "post",
            0,
            False,
            "image/jpeg",
            CHUNK_SCHEMA,
            "The live stream's frames, in pieces.",
            CHUNK_HEADERS_SCHEMA,
        ),
        Channel(
            "content",
            "centre",
            1,
            True,
            "application/json",
            CONTENT_ENVELOPE_SCHEMA,
            "Safety content for the gate WiFi, signed by the centre.",
        ),
        Channel("portal", "post", 1, False, "application/json", PORTAL_SCHEMA, "The gate WiFi's statistics."),
        Channel("selftest", "post", 1, False, "application/json", SELFTEST_SCHEMA, "One self-test and its steps."),
    )
}


class ContractError(ValueError):
    """A topic or payload that does not follow the contract; the message says what is wrong."""


def check_id(kind: str, value: str) -> str:
    """``value`` as a site or post id, or :class:`ContractError` naming ``kind``."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ContractError(f"{kind}: {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


class Topics:
    """The topics of one post.

    >>> t = Topics("school-12", "gate-north")
    >>> t.commands, t.availability
    ('alarmpost/v1/school-12/gate-north/commands', 'alarmpost/v1/school-12/gate-north/availability')
    """

    def __init__(self, site: str, post: str) -> None:
        self.site = check_id("site", site)
        self.post = check_id("post", post)
        self.root = f"{ROOT}/{site}/{post}"
        self.availability = self.of("availability")
        self.state = self.of("state")
        self.events = self.of("events")
        self.results = self.of("results")
        self.audit = self.of("audit")
        self.health = self.of("health")
        self.commands = self.of("commands")
        self.receipts = self.of("receipts")
        self.requests = self.of("requests")
        self.snapshots = self.of("snapshots")
        self.stream = self.of("stream")
        self.content = self.of("content")
        self.portal = self.of("portal")
        self.selftest = self.of("selftest")

    def of(self, channel: str) -> str:
        if channel not in CHANNELS:
            raise ContractError(f"{channel!r} is not a channel ({', '.join(CHANNELS)})")
        return f"{self.root}/{channel}"


def centre_filter(channel: str = "#") -> str:
    """The subscription a centre uses for ``channel`` on every post (``#``: everything)."""
    if channel == "#":
        return f"{ROOT}/#"
    Topics("x", "x").of(channel)
    return f"{ROOT}/+/+/{channel}"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """(site, post, channel) of a post's topic, or :class:`ContractError`."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        raise ContractError(f"{topic!r} is not {ROOT}/<site>/<post>/<channel>")
    site, post, channel = parts[2:]
    check_id("site", site)
    check_id("post", post)
    if channel not in CHANNELS:
        raise ContractError(f"{topic!r}: {channel!r} is not a channel ({', '.join(CHANNELS)})")
    return site, post, channel


_validators: dict[int, jsonschema.Draft7Validator] = {}


def _first_error(schema: dict[str, Any], value: Any) -> str | None:
    validator = _validators.get(id(schema))
    if validator is None:  # building one is slow: one per schema, kept (the schemas are module constants)
        validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        _validators[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    return f"{where}: {error.message}"


def decode(channel: str, payload: bytes) -> Any:
    """The payload of a message on ``channel``, checked against its schema; :class:`ContractError` if not.

    >>> decode("availability", b"online")
    'online'
    >>> decode("commands", b'{"command": "reset", "by": "x"}')
    Traceback (most recent call last):
      ...
    edge_daemon.contract.ContractError: commands: payload: Additional properties are not allowed ('by' was unexpected)
    """
    spec = CHANNELS[channel]
    if spec.content_type == "image/jpeg":
        if not payload:
            raise ContractError(f"{channel}: an empty piece of a picture")
        return payload
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"{channel}: not UTF-8 text (byte {exc.start})") from None
    if spec.content_type == "application/json":
        try:
            value: Any = json.loads(text)
        except ValueError as exc:
            raise ContractError(f"{channel}: not JSON: {exc}") from None
    else:
        value = text
    problem = _first_error(spec.schema, value)
    if problem is not None:
        raise ContractError(f"{channel}: {_shorten(problem)}")
    return value


def _shorten(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 5] + " ...]"


def encode(channel: str, value: Any) -> bytes:
    """``value`` as the payload of ``channel``; refuses (:class:`ContractError`) what its schema refuses."""
    spec = CHANNELS[channel]
    problem = _first_error(spec.schema, value)
    if problem is not None:
        raise ContractError(f"{channel}: {problem}")
    if spec.content_type == "application/json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return str(value).encode()


def iso_time(unix: float) -> str:
    """``unix`` seconds as UTC ISO 8601 with milliseconds, as every payload writes times.

    >>> iso_time(1_800_000_000.25)
    '2027-01-15T08:00:00.250Z'
    """
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Unix seconds of a payload's ISO 8601 time (as :func:`iso_time` writes it).

    >>> parse_time("2027-01-15T08:00:00.250Z")
    1800000000.25
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def number_ranges(numbers: Any) -> list[list[int]]:
    """Numbers as sorted ``[first, last]`` ranges, as receipts carry them.

    >>> number_ranges({7, 1, 2, 3, 5})
    [[1, 3], [5, 5], [7, 7]]
    """
    ranges: list[list[int]] = []
    for n in sorted(set(numbers)):
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return ranges


def receipt_ranges(receipt: dict[str, Any], kind: str) -> list[tuple[int, int]]:
    """The ``[first, last]`` ranges of a decoded receipt's ``kind`` (events or audit); ContractError
    when a range runs backwards."""
    ranges = [(int(first), int(last)) for first, last in receipt[kind]]
    for first, last in ranges:
        if first > last:
            raise ContractError(f"receipts: {kind}: range [{first}, {last}] runs backwards")
    return ranges


def check_headers(headers: dict[str, str]) -> str | None:
    """What is wrong with a command's signature headers (MQTT 5 user properties), or None."""
    return _first_error(COMMAND_HEADERS_SCHEMA, headers)


def check_chunk_headers(headers: dict[str, str]) -> str | None:
    """What is wrong with a picture piece's headers (MQTT 5 user properties), or None."""
    return _first_error(CHUNK_HEADERS_SCHEMA, headers)


if __name__ == "__main__":
    from edge_daemon.asyncapi import document

    sys.stdout.write(document())
