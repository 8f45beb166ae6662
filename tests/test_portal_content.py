"""The gate WiFi's content: signed bundles, what the portal refuses, the cache, and the way from the centre.

Bundles are signed with a fresh Ed25519 key per test; ``sign_unchecked`` signs bytes as
they are, so the post's own checks are tested, not only the centre's.  The end-to-end test
runs a real mosquitto: the centre publishes, a subscriber with the post's account gets
the retained payload, and the post's store takes it.
"""

from __future__ import annotations

import base64
import builtins
import copy
import hashlib
import json
import logging
import os
import queue
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from captive_portal import default_content
from captive_portal.content import (
    IMAGE_FOLDER,
    PAYLOAD_FILE,
    BundleError,
    ContentKeyError,
    ContentStore,
    bundle_bytes,
    default_bundle,
    display_order,
    generate_keypair,
    inline_image_files,
    load_private_key,
    load_public_key,
    sign_bundle,
    verify_bundle,
)
from edge_daemon import centre as centre_cli
from edge_daemon.centre import Centre, CentreError
from edge_daemon.contract import CONTENT_IMAGE_MAX_BYTES, CONTENT_SIGNATURE_CONTEXT, Topics, iso_time
from hw_sim.mosquitto import Mosquitto

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = 3600.0
MAX_BYTES = 2048 * 1024
SITE, POST = "school-12", "gate-north"
WAIT_S = 5.0

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64)


def item(item_id: str = "early-pick-up", **fields: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "id": item_id,
        "priority": 50,
        "pinned": False,
        "valid_from": None,
        "valid_until": None,
        "title": {"zh": "今天提前放学", "en": "Early pick-up today"},
        "body": {"zh": ["15:00放学。"], "en": ["School ends at 15:00."]},
        "image": None,
    }
    made.update(fields)
    return made


def image(data: bytes = PNG, media_type: str = "image/png") -> dict[str, Any]:
    return {"type": media_type, "data": base64.b64encode(data).decode(), "alt": {"zh": "校门", "en": "The gate"}}


def bundle(version: int = 1, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": f"school-12-v{version}",
        "version": version,
        "issued": iso_time(NOW),
        "items": [item()] if items is None else items,
    }


def sign_unchecked(signed: bytes, key: Ed25519PrivateKey) -> bytes:
    """An envelope around ``signed`` exactly as given: what a careless or hostile centre could send."""
    signature = key.sign(CONTENT_SIGNATURE_CONTEXT + signed)
    envelope = {
        "format": "alarmpost-content-v1",
        "bundle": base64.b64encode(signed).decode(),
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(envelope).encode()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path: Path, key: Ed25519PrivateKey) -> ContentStore:
    return ContentStore(tmp_path / "cache", key.public_key(), MAX_BYTES)


# -- signing and verifying -------------------------------------------------------------------


def test_a_signed_bundle_verifies_with_everything_in_it(key: Ed25519PrivateKey) -> None:
    english_less = item("water", title={"zh": "防溺水"}, body={"zh": ["不私自下水游泳。"]}, image=image())
    payload = sign_bundle(bundle(7, [item(pinned=True, valid_until=iso_time(NOW + HOUR)), english_less]), key)
    got = verify_bundle(payload, key.public_key(), MAX_BYTES)
    assert (got.id, got.version, got.issued, got.payload) == ("school-12-v7", 7, NOW, payload)
    notice, water = got.items
    assert (notice.pinned, notice.valid_from, notice.valid_until) == (True, None, NOW + HOUR)
    assert notice.text("en") == ("Early pick-up today", ("School ends at 15:00.",))
    assert notice.text("zh") == ("今天提前放学", ("15:00放学。",))
    assert water.text("en") == water.text("zh") == ("防溺水", ("不私自下水游泳。",))  # no English: Chinese
    assert water.image is not None and water.image.data == PNG and water.image.media_type == "image/png"
    assert water.image_in("en") == (water.image.name, "The gate")
    assert water.image.name == f"{hashlib.sha256(PNG).hexdigest()}.png"


def test_signing_is_deterministic_so_a_redelivered_bundle_is_recognised(key: Ed25519PrivateKey) -> None:
    assert sign_bundle(bundle(), key) == sign_bundle(copy.deepcopy(bundle()), key)


def test_a_bundle_signed_with_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    payload = sign_bundle(bundle(), Ed25519PrivateKey.generate())
    with pytest.raises(BundleError, match="^signature does not verify with the centre's key$"):
        verify_bundle(payload, key.public_key(), MAX_BYTES)


@pytest.mark.parametrize("part", ["bundle", "signature"])
def test_a_tampered_bundle_or_signature_is_refused(key: Ed25519PrivateKey, part: str) -> None:
    envelope = json.loads(sign_bundle(bundle(), key))
    raw = bytearray(base64.b64decode(envelope[part]))
    raw[len(raw) // 2] ^= 0x01
    envelope[part] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(BundleError, match="^signature does not verify with the centre's key$"):
        verify_bundle(json.dumps(envelope).encode(), key.public_key(), MAX_BYTES)


def test_a_payload_over_the_limit_is_refused_before_anything_else(key: Ed25519PrivateKey) -> None:
    payload = sign_bundle(bundle(), key)
    assert verify_bundle(payload, key.public_key(), len(payload)).version == 1
    with pytest.raises(BundleError, match=f"^the payload is {len(payload)} bytes, more than the {len(payload) - 1} "):
        verify_bundle(payload, key.public_key(), len(payload) - 1)


def without(value: dict[str, Any], path: str) -> dict[str, Any]:
    """``value`` with the key at ``path`` (``items/0/title``) removed."""
    changed = copy.deepcopy(value)
    *parents, last = path.split("/")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    del node[last]
    return changed


def with_item(**fields: Any) -> dict[str, Any]:
    return bundle(items=[item(**fields)])


BROKEN_BUNDLES: list[tuple[Any, str]] = [
    (without(bundle(), "items"), "bundle: 'items' is a required property"),
    (without(bundle(), "items/0/title"), "items[0]: 'title' is a required property"),
    (without(bundle(), "items/0/title/zh"), "items[0].title: 'zh' is a required property"),
    (without(bundle(), "items/0/pinned"), "items[0]: 'pinned' is a required property"),
    (dict(bundle(), version=-1), "version: -1 is less than the minimum of 0"),
    (dict(bundle(), version="2"), "version: '2' is not of type 'integer'"),
    (dict(bundle(), issued="yesterday"), "issued: 'yesterday' is not a 'date-time'"),
    ([bundle()], "bundle: [{"),
    (with_item(priority=101), "items[0].priority: 101 is greater than the maximum of 100"),
    (with_item(pinned="yes"), "items[0].pinned: 'yes' is not of type 'boolean'"),
    (with_item(id="Pick Up"), "items[0].id: 'Pick Up' does not match"),
    (with_item(colour="red"), "items[0]: Additional properties are not allowed ('colour' was unexpected)"),
    (with_item(title={"zh": "接送", "fr": "x"}), "items[0].title: Additional properties are not allowed ('fr'"),
    (with_item(body={"zh": "一段"}), "items[0].body.zh: '一段' is not of type 'array'"),
    (with_item(valid_from="2027-01-15T08:00:00"), "items[0].valid_from: '2027-01-15T08:00:00' is not a 'date-time'"),
    (
        with_item(valid_from=iso_time(NOW), valid_until=iso_time(NOW)),
        "items[0].valid_until: 2027-01-15T08:00:00.000Z is not after valid_from 2027-01-15T08:00:00.000Z",
    ),
    (with_item(image=dict(image(), type="image/gif")), "items[0].image.type: 'image/gif' is not one of"),
    (with_item(image=image(JPEG, "image/png")), "items[0].image: data is not a PNG"),
    (with_item(image=image(PNG, "image/jpeg")), "items[0].image: data is not a JPEG"),
    (with_item(image=image(b"RIFF\x00\x00\x00\x00WAVE", "image/webp")), "items[0].image: data is not a WebP"),
    (with_item(image=dict(image(), data="abc")), "items[0].image.data: not base64"),
    (with_item(image=dict(image(), data="<svg>")), "items[0].image.data: '<svg>' does not match"),
    (with_item(image=without(image(), "alt")), "items[0].image: 'alt' is a required property"),
    (
        with_item(image=image(PNG + bytes(CONTENT_IMAGE_MAX_BYTES - len(PNG) + 1))),
        f"items[0].image: {CONTENT_IMAGE_MAX_BYTES + 1} bytes, more than the {CONTENT_IMAGE_MAX_BYTES} allowed",
    ),
    (bundle(items=[item(f"item-{n}") for n in range(51)]), "items: 51 items, more than the 50 allowed"),
    (bundle(items=[item("pick-up"), item("pick-up")]), "items[1].id: 'pick-up' is already the id of items[0]"),
    (with_item(body={"zh": ["请<b>注意</b>安全"]}), "items[0].body.zh[0]: looks like HTML ('<b'); text is shown"),
    (with_item(title={"zh": "接送", "en": "Tom &amp; Jerry"}), "items[0].title.en: looks like HTML ('&amp;')"),
    (with_item(body={"zh": ["第一段\n第二段"]}), "items[0].body.zh[0]: contains a control character (U+000A)"),
    (with_item(title={"zh": "   "}), "items[0].title.zh: is blank"),
]


@pytest.mark.parametrize(("broken", "message"), BROKEN_BUNDLES, ids=[m[:50] for _, m in BROKEN_BUNDLES])
def test_a_signed_bundle_breaking_the_rules_is_refused_saying_what_is_wrong(
    key: Ed25519PrivateKey, broken: Any, message: str
) -> None:
    payload = sign_unchecked(json.dumps(broken).encode(), key)
    with pytest.raises(BundleError) as refused:
        verify_bundle(payload, key.public_key(), MAX_BYTES)
    assert str(refused.value).startswith(message)
    if isinstance(broken, dict):  # the centre's side refuses to sign it, with the same words
        with pytest.raises(BundleError) as not_signed:
            sign_bundle(broken, key)
        assert str(not_signed.value) == str(refused.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "the payload is empty"),
        (b"\xff{}", "envelope: not UTF-8 text (byte 0)"),
        (b"<html>", "envelope: not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"[]", "envelope: [] is not of type 'object'"),
        (b"[" * 200_000, "envelope: nested too deeply"),
        (b'{"format": "alarmpost-content-v1", "bundle": "e30="}', "envelope: 'signature' is a required property"),
        (
            b'{"format": "alarmpost-content-v2", "bundle": "e30=", "signature": "' + b"A" * 86 + b'=="}',
            "envelope.format: 'alarmpost-content-v1' was expected",
        ),
        (
            b'{"format": "alarmpost-content-v1", "bundle": "e30=", "signature": "c2ln"}',
            "envelope.signature: 'c2ln' does not match",
        ),
    ],
)
def test_a_payload_that_is_not_an_envelope_is_refused_saying_what_is_wrong(
    key: Ed25519PrivateKey, payload: bytes, message: str
) -> None:
    with pytest.raises(BundleError) as refused:
        verify_bundle(payload, key.public_key(), MAX_BYTES)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("signed", "message"),
    [(b"{not json", "bundle: not JSON: "), (b"\xfe\xff", "bundle: not UTF-8 text (byte 0)")],
)
def test_signed_bytes_that_are_not_a_bundle_are_refused(key: Ed25519PrivateKey, signed: bytes, message: str) -> None:
    with pytest.raises(BundleError, match="^" + re.escape(message)):
        verify_bundle(sign_unchecked(signed, key), key.public_key(), MAX_BYTES)


def test_images_of_every_allowed_type_pass(key: Ed25519PrivateKey) -> None:
    items = [
        item("png", image=image(PNG)),
        item("jpeg", image=image(JPEG, "image/jpeg")),
        item("webp", image=image(WEBP, "image/webp")),
    ]
    got = verify_bundle(sign_bundle(bundle(items=items), key), key.public_key(), MAX_BYTES)
    names = [i.image.name.rsplit(".", 1)[1] for i in got.items if i.image is not None]
    assert names == ["png", "jpg", "webp"]


def test_sign_bundle_refuses_what_json_cannot_hold(key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleError, match="^bundle: cannot be written as JSON: "):
        sign_bundle(dict(bundle(), issued=object()), key)


# -- which items are shown, and in which order -----------------------------------------------


def test_items_are_shown_only_while_valid(store: ContentStore, key: Ed25519PrivateKey) -> None:
    items = [
        item("always"),
        item("expired", valid_until=iso_time(NOW - 1)),
        item("not-yet", valid_from=iso_time(NOW + HOUR)),
        item("this-hour", valid_from=iso_time(NOW), valid_until=iso_time(NOW + HOUR)),
    ]
    store.offer(sign_bundle(bundle(items=items), key))
    shown = {at: [i.id for i in store.current_items(at)] for at in (NOW - 2, NOW, NOW + HOUR - 0.001, NOW + HOUR)}
    assert shown == {
        NOW - 2: ["always", "expired"],
        NOW: ["always", "this-hour"],
        NOW + HOUR - 0.001: ["always", "this-hour"],
        NOW + HOUR: ["always", "not-yet"],  # valid_until is exclusive
    }


def test_pinned_items_come_first_then_priority_then_id(store: ContentStore, key: Ed25519PrivateKey) -> None:
    items = [
        item("b-high", priority=90),
        item("low", priority=10),
        item("a-high", priority=90),
        item("urgent", priority=0, pinned=True),
        item("urgent-high", priority=100, pinned=True),
    ]
    store.offer(sign_bundle(bundle(items=items), key))
    assert [i.id for i in store.current_items(NOW)] == ["urgent-high", "urgent", "a-high", "b-high", "low"]


def test_with_nothing_valid_now_the_default_items_are_shown(store: ContentStore, key: Ed25519PrivateKey) -> None:
    store.offer(sign_bundle(bundle(items=[item(valid_until=iso_time(NOW))]), key))
    assert store.bundle.version == 1
    assert store.current_items(NOW) == sorted(default_bundle().items, key=display_order)
    assert store.current_items(NOW - 1)[0].id == "early-pick-up"


# -- the built-in default ----------------------------------------------------------------------


def test_the_default_content_is_a_light_bilingual_bundle_of_version_0() -> None:
    default = default_bundle()
    assert (default.version, default.payload) == (0, b"")
    assert 4 <= len(default.items) <= 6
    assert {"pick-up-safety", "stranger-safety", "emergency-help"} <= {i.id for i in default.items}
    for shown in default.items:
        assert shown.title.en and shown.body.en and len(shown.body.en) == len(shown.body.zh), shown.id
        assert shown.image is None and shown.valid_at(0) and not shown.pinned
    emergency = next(i for i in default.items if i.id == "emergency-help")
    assert any("110" in p and "120" in p for p in emergency.body.zh)


def test_the_default_content_follows_the_bundle_rules(key: Ed25519PrivateKey) -> None:
    signed = dict(default_content.DEFAULT_BUNDLE, version=1)
    assert verify_bundle(sign_bundle(signed, key), key.public_key(), MAX_BYTES).items == default_bundle().items


def test_without_a_centre_key_only_the_default_is_shown(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    ContentStore(tmp_path, key.public_key(), MAX_BYTES).offer(sign_bundle(bundle(), key))
    offline = ContentStore(tmp_path, None, MAX_BYTES)  # the cache is there, but there is no key to check it
    assert offline.bundle == default_bundle()
    with pytest.raises(BundleError, match="^no centre key configured$"):
        offline.offer(sign_bundle(bundle(2), key))


# -- the store: rollback, cache, images -------------------------------------------------------


def test_an_older_or_different_same_version_bundle_is_refused(store: ContentStore, key: Ed25519PrivateKey) -> None:
    store.offer(sign_bundle(bundle(5), key))
    with pytest.raises(BundleError, match="^version 3 is older than the cached version 5$"):
        store.offer(sign_bundle(bundle(3), key))
    with pytest.raises(BundleError, match="^version 5 is the cached version but a different bundle"):
        store.offer(sign_bundle(dict(bundle(5), id="another"), key))
    assert store.bundle.id == "school-12-v5"


def test_the_same_bundle_again_is_accepted_and_changes_nothing(store: ContentStore, key: Ed25519PrivateKey) -> None:
    payload = sign_bundle(bundle(5), key)
    first = store.offer(payload)
    cached = store.payload_path.stat()
    revision = store.revision
    assert store.offer(payload) is first  # a retained message is delivered again on every connection
    assert store.payload_path.stat().st_ino == cached.st_ino and store.revision == revision


def test_a_newer_bundle_replaces_the_content_and_the_revision(store: ContentStore, key: Ed25519PrivateKey) -> None:
    default_revision = store.revision
    assert store.bundle.version == 0 and default_revision.startswith("0-")
    store.offer(sign_bundle(bundle(1), key))
    one = store.revision
    store.offer(sign_bundle(bundle(2, [item("other")]), key))
    assert len({default_revision, one, store.revision}) == 3
    assert [i.id for i in store.current_items(NOW)] == ["other"]


def test_an_accepted_bundle_survives_a_restart_with_its_images(
    tmp_path: Path, store: ContentStore, key: Ed25519PrivateKey
) -> None:
    payload = sign_bundle(bundle(4, [item(image=image(PNG))]), key)
    shown = store.offer(payload).items[0].image_in("zh")
    assert shown is not None
    name = shown[0]
    assert store.payload_path == store.cache_dir / PAYLOAD_FILE and store.payload_path.read_bytes() == payload
    assert (store.cache_dir / IMAGE_FOLDER / name).read_bytes() == PNG
    restarted = ContentStore(store.cache_dir, key.public_key(), MAX_BYTES)
    assert restarted.bundle == store.bundle and restarted.revision == store.revision
    assert restarted.image(name) == (PNG, "image/png")
    with pytest.raises(BundleError, match="^version 3 is older than the cached version 4$"):
        restarted.offer(sign_bundle(bundle(3), key))  # rollback protection holds across the restart


def test_pictures_no_longer_used_are_removed(store: ContentStore, key: Ed25519PrivateKey) -> None:
    old = store.offer(sign_bundle(bundle(1, [item(image=image(PNG))]), key)).items[0].image_in("zh")
    new = store.offer(sign_bundle(bundle(2, [item(image=image(JPEG, "image/jpeg"))]), key)).items[0].image_in("zh")
    assert old is not None and new is not None
    assert sorted(p.name for p in (store.cache_dir / IMAGE_FOLDER).iterdir()) == [new[0]]
    assert store.image(old[0]) is None and store.image(new[0]) == (JPEG, "image/jpeg")


@pytest.mark.parametrize(
    "damage",
    [
        lambda payload: payload[: len(payload) // 2],  # cut short (a full disk)
        lambda payload: b"\x00" * len(payload),  # zeroed (a bad card)
        lambda payload: payload.replace(b'"signature":"', b'"signature":"A', 1),
    ],
    ids=["truncated", "zeroed", "signature"],
)
def test_a_damaged_cache_is_logged_and_the_default_shown(
    store: ContentStore, key: Ed25519PrivateKey, caplog: pytest.LogCaptureFixture, damage: Callable[[bytes], bytes]
) -> None:
    store.offer(sign_bundle(bundle(9), key))
    store.payload_path.write_bytes(damage(store.payload_path.read_bytes()))
    with caplog.at_level(logging.ERROR, logger="alarmpost.portal.content"):
        restarted = ContentStore(store.cache_dir, key.public_key(), MAX_BYTES)
    assert restarted.bundle == default_bundle()
    assert "the cached content" in caplog.text and "using the built-in default" in caplog.text
    # losing the cache does not let an older signed bundle back in; the next newer one is taken
    with pytest.raises(BundleError, match="version 1 is older than the cached version 9"):
        restarted.offer(sign_bundle(bundle(1), key))
    assert restarted.offer(sign_bundle(bundle(10), key)).version == 10


def test_a_cache_signed_by_another_key_is_not_trusted(store: ContentStore, key: Ed25519PrivateKey) -> None:
    store.offer(sign_bundle(bundle(9), key))
    rotated = ContentStore(store.cache_dir, Ed25519PrivateKey.generate().public_key(), MAX_BYTES)
    assert rotated.bundle == default_bundle()


def folder_snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_ino) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "refused",
    [
        lambda key: sign_bundle(bundle(1, [item(image=image(WEBP, "image/webp"))]), key),  # older
        lambda key: sign_bundle(bundle(9), Ed25519PrivateKey.generate()),  # another key
        lambda key: sign_unchecked(json.dumps(bundle(9, [item(image=image(JPEG))])).encode(), key),  # bad image
        lambda key: b"{}",
    ],
    ids=["older", "another-key", "bad-image", "not-an-envelope"],
)
def test_a_refused_offer_leaves_the_cache_as_it_was(
    store: ContentStore, key: Ed25519PrivateKey, refused: Callable[[Ed25519PrivateKey], bytes]
) -> None:
    store.offer(sign_bundle(bundle(5, [item(image=image(PNG))]), key))
    before, in_use = folder_snapshot(store.cache_dir), store.bundle
    with pytest.raises(BundleError):
        store.offer(refused(key))
    assert folder_snapshot(store.cache_dir) == before and store.bundle is in_use


def test_a_cache_that_cannot_be_written_refuses_the_offer_and_keeps_the_content(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    store = ContentStore(blocked, key.public_key(), MAX_BYTES)
    with pytest.raises(BundleError, match="cannot be written .*; kept the content in use$"):
        store.offer(sign_bundle(bundle(), key))
    assert store.bundle == default_bundle()


@pytest.mark.parametrize(
    "name",
    [
        "../content.json",
        "..",
        "img/" + "a" * 64 + ".png",
        "/etc/passwd",
        "A" * 64 + ".png",
        "a" * 64 + ".PNG",
        "a" * 64 + ".gif",
        "a" * 63 + ".png",
        "a" * 64 + ".png\n",
        "a" * 64 + ".png/..",
        "",
    ],
)
def test_an_image_name_that_is_not_a_sha256_name_is_refused_without_touching_the_disk(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def no_disk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the filesystem was touched for {name!r}")

    for module, attribute in ((builtins, "open"), (os, "open"), (os, "stat"), (Path, "read_bytes"), (Path, "open")):
        monkeypatch.setattr(module, attribute, no_disk)
    assert store.image(name) is None


def test_an_unknown_sha256_name_is_none(store: ContentStore) -> None:
    assert store.image("0" * 64 + ".png") is None


# -- keys ---------------------------------------------------------------------------------------


def test_a_generated_keypair_loads_and_the_private_key_is_for_its_owner_only(tmp_path: Path) -> None:
    public = generate_keypair(tmp_path / "content.key", tmp_path / "content.pub")
    assert stat.S_IMODE((tmp_path / "content.key").stat().st_mode) == 0o600
    private = load_private_key(tmp_path / "content.key")
    loaded = load_public_key(tmp_path / "content.pub")
    assert loaded.public_bytes_raw() == public.public_bytes_raw() == private.public_key().public_bytes_raw()
    payload = sign_bundle(bundle(), private)
    assert verify_bundle(payload, loaded, MAX_BYTES).version == 1
    with pytest.raises(ContentKeyError, match="content.key: already exists; not overwritten$"):
        generate_keypair(tmp_path / "content.key", tmp_path / "other.pub")


def rsa_public_pem() -> bytes:
    return (
        rsa.generate_private_key(65537, 1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"c2VjcmV0", "not a PEM public key (expected a -----BEGIN PUBLIC KEY----- block)"),
        (b"-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n", "the PEM public key does not load"),
        (rsa_public_pem(), "an RSA public key, not Ed25519"),
    ],
    ids=["missing", "not-pem", "broken-pem", "rsa"],
)
def test_an_unusable_public_key_file_is_refused_naming_it(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "centre.pub"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ContentKeyError) as refused:
        load_public_key(path)
    assert str(refused.value).startswith(f"{path}: {message}")


def test_a_public_key_is_not_taken_as_the_private_one(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "content.key", tmp_path / "content.pub")
    with pytest.raises(ContentKeyError, match=r"content.pub: not a PEM private key \(expected a -----BEGIN PRIVATE"):
        load_private_key(tmp_path / "content.pub")


# -- the centre's command line --------------------------------------------------------------------


def test_images_given_as_files_are_inlined_with_their_type(tmp_path: Path) -> None:
    (tmp_path / "gate.jpg").write_bytes(JPEG)
    written = bundle(items=[item(image={"file": "gate.jpg", "alt": {"zh": "校门"}})])
    inlined = inline_image_files(written, tmp_path)
    assert inlined["items"][0]["image"] == {
        "type": "image/jpeg",
        "data": base64.b64encode(JPEG).decode(),
        "alt": {"zh": "校门"},
    }
    assert written["items"][0]["image"]["file"] == "gate.jpg"  # the original is left alone
    (tmp_path / "gate.gif").write_bytes(b"GIF89a")
    with pytest.raises(BundleError, match=r"^items\[0\].image.file: .*gate.gif is not a JPEG, PNG or WebP image$"):
        inline_image_files(bundle(items=[item(image={"file": "gate.gif", "alt": {"zh": "x"}})]), tmp_path)
    with pytest.raises(BundleError, match=r"^items\[0\].image.file: cannot read .*missing.png: No such file"):
        inline_image_files(bundle(items=[item(image={"file": "missing.png", "alt": {"zh": "x"}})]), tmp_path)


def test_the_cli_makes_keys_and_signs_a_bundle_in_a_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = tmp_path / "content.key", tmp_path / "content.pub"
    assert centre_cli.main(["content-keygen", str(private), str(public)]) == 0
    (tmp_path / "gate.png").write_bytes(PNG)
    written = tmp_path / "bundle.json"
    written.write_text(json.dumps(bundle(3, [item(image={"file": "gate.png", "alt": {"zh": "校门"}})])))
    capsys.readouterr()
    assert centre_cli.main(["content", f"{SITE}/{POST}", str(written), "--key", str(private), "--dry-run"]) == 0
    size = len(sign_bundle(inline_image_files(json.loads(written.read_text()), tmp_path), load_private_key(private)))
    assert capsys.readouterr().out == f"{written}: signed, {size} bytes (not published: --dry-run)\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON: Expecting property name"),
        ("[]", "not a JSON object"),
        (json.dumps(with_item(priority=101)), "items[0].priority: 101 is greater than the maximum of 100"),
    ],
)
def test_the_cli_refuses_a_bundle_a_post_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    generate_keypair(tmp_path / "content.key", tmp_path / "content.pub")
    written = tmp_path / "bundle.json"
    written.write_text(text)
    args = ["content", f"{SITE}/{POST}", str(written), "--key", str(tmp_path / "content.key"), "--dry-run"]
    assert centre_cli.main(args) == 1
    assert capsys.readouterr().err.startswith(f"centre: {written}: {message}")


# -- from the centre to the post, through a real broker ----------------------------------------


class PostSubscriber:
    """A paho MQTT 5 client logged in with the post's account, whose messages arrive in a queue."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed: queue.Queue[object] = queue.Queue()
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, "portal-test", protocol=mqtt.MQTTv5)
        self.paho.username_pw_set(f"{SITE}/{POST}")
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_subscribe = lambda _c, _u, mid, reasons, _p: self.subscribed.put(reasons)
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[PostSubscriber]:
    made = PostSubscriber(broker.port)
    yield made
    made.close()


def test_a_bundle_goes_from_the_centre_through_the_broker_into_the_posts_store(
    broker: Mosquitto, subscriber: PostSubscriber, store: ContentStore, key: Ed25519PrivateKey
) -> None:
    payload = sign_bundle(bundle(2, [item(pinned=True, image=image(PNG))]), key)
    with Centre("127.0.0.1", broker.port, tls=False, clean=True) as centre:
        centre.publish_content(SITE, POST, payload)  # returns once the broker has it, retained
        subscriber.paho.subscribe(Topics(SITE, POST).content, qos=1)
        message = subscriber.messages.get(timeout=WAIT_S)
        assert centre.invalid == [] and not [m for m in centre.received if m.channel == "content"]
    assert (message.topic, message.retain, message.qos, bytes(message.payload)) == (
        Topics(SITE, POST).content,
        True,
        1,
        payload,
    )
    accepted = store.offer(message.payload)
    assert accepted.version == 2 and [i.id for i in store.current_items(NOW)] == ["early-pick-up"]
    assert store.offer(message.payload) is accepted  # delivered again on the next connection: no change


def test_the_cli_publishes_a_bundle_the_post_accepts(
    broker: Mosquitto, subscriber: PostSubscriber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_keypair(tmp_path / "content.key", tmp_path / "content.pub")
    written = tmp_path / "bundle.json"
    written.write_text(json.dumps(bundle(6)), encoding="utf-8")
    args = ["--host", "127.0.0.1", "--port", str(broker.port), "--no-tls", "content", f"{SITE}/{POST}", str(written)]
    assert centre_cli.main([*args, "--key", str(tmp_path / "content.key")]) == 0
    assert "published, retained, to alarmpost/v1/school-12/gate-north/content" in capsys.readouterr().out
    subscriber.paho.subscribe(Topics(SITE, POST).content, qos=1)
    payload = subscriber.messages.get(timeout=WAIT_S).payload
    post_store = ContentStore(tmp_path / "cache", load_public_key(tmp_path / "content.pub"), MAX_BYTES)
    assert post_store.offer(payload).version == 6


def test_the_centre_publishes_only_content_envelopes(broker: Mosquitto) -> None:
    with Centre("127.0.0.1", broker.port, tls=False, clean=True) as centre:
        with pytest.raises(CentreError, match="^not a content envelope: content: "):
            centre.publish_content(SITE, POST, bundle_bytes(bundle()))
