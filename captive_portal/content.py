"""Safety content for the gate WiFi: signed bundles from the centre, checked, cached and shown.

The trust model
---------------

The portal shows parents what the school's monitoring centre wants them to read. Those
pages carry a school's authority, so only the centre may decide what is on them: not
the broker, not the network between, not whoever can reach the post's MQTT account.

* **Ed25519 signatures.** The centre signs every bundle with its content key; the post
  holds only the public half (``content.centre_key_file``), so a post, or the broker
  that relays the bundle, can check a bundle but never make one. Ed25519 keys and
  signatures are small, verifying is fast on a Raspberry Pi, signatures are
  deterministic (the same bundle always gets the same signature, so a retained message
  received again is recognised as the same) and there are no parameters to get wrong.
  The signature covers ``alarmpost-content-v1`` LF and then the bundle's exact bytes, so
  it cannot be mistaken for a signature over anything else.
* **Plain text only.** Titles, paragraphs and image captions are text, never HTML: the
  page escapes every character and text that looks like markup is refused. Even a
  stolen content key cannot put script, links or forms in front of parents. Images
  are checked to be what they claim (JPEG, PNG or WebP by their first bytes) and
  served under their SHA-256, never under a name from the centre.
* **Rollback protection.** Every bundle has a version; a post accepts only a higher
  version than the one it has (the same bundle again is fine), so an old bundle,
  captured and replayed, can never bring back an outdated or withdrawn notice.
* **A cache across outages.** The accepted payload is kept on disk exactly as signed
  and verified again at every start, so the content (and the version it has reached)
  survive a reboot or a long uplink outage. A cache that no longer verifies is ignored
  and the built-in default (:mod:`captive_portal.default_content`) is shown instead.

Every refusal is a :class:`BundleError` whose message says exactly what is wrong.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.from_private_bytes(bytes(32))
>>> item = {"id": "pick-up", "priority": 50, "pinned": False, "title": {"zh": "接送安全"}, "body": {"zh": ["请排队。"]}}
>>> payload = sign_bundle({"id": "spring", "version": 7, "issued": "2027-03-01T08:00:00Z", "items": [item]}, key)
>>> bundle = verify_bundle(payload, key.public_key(), max_bytes=2048 * 1024)
>>> bundle.version, bundle.items[0].title_in("en")
(7, '接送安全')
>>> verify_bundle(payload, Ed25519PrivateKey.generate().public_key(), max_bytes=2048 * 1024)
Traceback (most recent call last):
  ...
captive_portal.content.BundleError: signature does not verify with the centre's key
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import jsonschema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from captive_portal.default_content import DEFAULT_BUNDLE
from captive_portal.files import write_atomically
from edge_daemon.contract import (
    CONTENT_BUNDLE_SCHEMA,
    CONTENT_ENVELOPE_SCHEMA,
    CONTENT_FORMAT,
    CONTENT_IMAGE_MAX_BYTES,
    CONTENT_IMAGE_TYPES,
    CONTENT_LANGS,
    CONTENT_MAX_ITEMS,
    CONTENT_SIGNATURE_CONTEXT,
)

log = logging.getLogger("alarmpost.portal.content")

PAYLOAD_FILE = "content.json"  # the accepted payload, exactly as signed
IMAGE_FOLDER = "img"  # the accepted bundle's images, as <sha256>.<ext>
IMAGE_NAME = re.compile(r"[0-9a-f]{64}\.(jpg|png|webp)")
IMAGE_TYPE_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!?]|&[A-Za-z]+;|&#[0-9]+;")
_MESSAGE_LIMIT = 200

T = TypeVar("T")


class ContentKeyError(ValueError):
    """A content key file that cannot be used; the message names the file and why."""


class BundleError(ValueError):
    """A content bundle refused; the message says exactly what is wrong."""


# -- keys ------------------------------------------------------------------------------


def _read_key_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ContentKeyError(f"{path}: no such file") from None
    except OSError as exc:
        raise ContentKeyError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The centre's public content key: a PEM ``PUBLIC KEY`` file holding an Ed25519 key."""
    data = _read_key_file(path)
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        raise ContentKeyError(f"{path}: not a PEM public key (expected a -----BEGIN PUBLIC KEY----- block)")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ContentKeyError(f"{path}: the PEM public key does not load: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ContentKeyError(f"{path}: {_key_kind(key)} public key, not Ed25519")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The centre's private content key: an unencrypted PEM ``PRIVATE KEY`` (PKCS #8) holding Ed25519."""
    data = _read_key_file(path)
    if b"-----BEGIN PRIVATE KEY-----" not in data:
        raise ContentKeyError(f"{path}: not a PEM private key (expected a -----BEGIN PRIVATE KEY----- block)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ContentKeyError(f"{path}: the PEM private key does not load: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ContentKeyError(f"{path}: {_key_kind(key)} private key, not Ed25519")
    return key


def _key_kind(key: object) -> str:
    kinds: tuple[tuple[tuple[type, ...], str], ...] = (
        ((rsa.RSAPublicKey, rsa.RSAPrivateKey), "an RSA"),
        ((ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey), "an EC"),
        ((dsa.DSAPublicKey, dsa.DSAPrivateKey), "a DSA"),
        ((ed448.Ed448PublicKey, ed448.Ed448PrivateKey), "an Ed448"),
        ((x25519.X25519PublicKey, x25519.X25519PrivateKey), "an X25519"),
    )
    return next((name for classes, name in kinds if isinstance(key, classes)), f"a {type(key).__name__}")


def generate_keypair(private_path: Path, public_path: Path) -> Ed25519PublicKey:
    """Make a new content key: the private half (mode 0600, never overwritten) and the public half."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ContentKeyError(f"{private_path}: already exists; not overwritten") from None
    with os.fdopen(descriptor, "wb") as private_file:
        private_file.write(private_pem)
    Path(public_path).write_bytes(public_pem)
    return key.public_key()


# -- what a bundle holds ---------------------------------------------------------------


@dataclass(frozen=True)
class Localized(Generic[T]):
    """A text in Simplified Chinese and, optionally, English; English falls back to Chinese."""

    zh: T
    en: T | None = None

    def get(self, lang: str) -> T:
        return self.en if lang == "en" and self.en is not None else self.zh


class ItemText(NamedTuple):
    """An item's words in one language."""

    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    """An item's picture, named by its SHA-256 (the name it is served and stored under)."""

    name: str  # <sha256>.<ext>
    media_type: str
    data: bytes
    alt: Localized[str]

    @classmethod
    def of(cls, media_type: str, data: bytes, alt: Localized[str]) -> Image:
        name = f"{hashlib.sha256(data).hexdigest()}.{CONTENT_IMAGE_TYPES[media_type]}"
        return cls(name, media_type, data, alt)


@dataclass(frozen=True)
class Item:
    """One piece of safety content on the portal's pages."""

    id: str
    priority: int
    pinned: bool
    valid_from: float | None  # unix seconds; None: no start
    valid_until: float | None  # unix seconds, exclusive; None: no end
    title: Localized[str]
    body: Localized[tuple[str, ...]]
    image: Image | None = None

    def valid_at(self, now: float) -> bool:
        started = self.valid_from is None or self.valid_from <= now
        return started and (self.valid_until is None or now < self.valid_until)

    def text(self, lang: str) -> ItemText:
        """The title and paragraphs in ``lang`` ("zh" or "en"), each falling back to Chinese."""
        return ItemText(self.title.get(lang), self.body.get(lang))

    def title_in(self, lang: str) -> str:
        return self.title.get(lang)

    def paragraphs_in(self, lang: str) -> tuple[str, ...]:
        return self.body.get(lang)

    def image_in(self, lang: str) -> tuple[str, str] | None:
        """The image's file name and its alt text in ``lang``, or None."""
        return None if self.image is None else (self.image.name, self.image.alt.get(lang))


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: ``digest`` is the SHA-256 of its signed bytes, ``payload`` the signed
    envelope as received (empty for the built-in default, which is not signed)."""

    id: str
    version: int
    issued: float
    items: tuple[Item, ...]
    digest: str
    payload: bytes = b""

    def images(self) -> dict[str, Image]:
        return {item.image.name: item.image for item in self.items if item.image is not None}


def display_order(item: Item) -> tuple[bool, int, str]:
    """Pinned first, then higher priority, then by id."""
    return (not item.pinned, -item.priority, item.id)


# -- signing and verifying -------------------------------------------------------------


def bundle_bytes(bundle: Mapping[str, Any]) -> bytes:
    """The bytes a bundle is signed as: compact UTF-8 JSON with sorted keys."""
    try:
        text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle: cannot be written as JSON: {exc}") from None
    return text.encode()


def sign_bundle(bundle: Mapping[str, Any], private_key: Ed25519PrivateKey) -> bytes:
    """The MQTT payload for ``bundle``, signed with the centre's key.

    The bundle is checked as a post will check it first: :class:`BundleError` says what a
    post would refuse, so nothing is signed that no post would show.
    """
    signed = bundle_bytes(bundle)
    check_bundle(json.loads(signed), digest=hashlib.sha256(signed).hexdigest())
    signature = private_key.sign(CONTENT_SIGNATURE_CONTEXT + signed)
    envelope = {
        "format": CONTENT_FORMAT,
        "bundle": base64.b64encode(signed).decode(),
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def verify_bundle(payload: bytes, public_key: Ed25519PublicKey, max_bytes: int) -> Bundle:
    """The bundle in ``payload`` if it is signed by ``public_key`` and follows the contract."""
    _check_payload_size(payload, max_bytes)
    envelope = _parse_json(payload, "envelope")
    _check_schema(CONTENT_ENVELOPE_SCHEMA, envelope, "envelope", prefix="envelope.")
    signed = _decode_base64(envelope["bundle"], "envelope.bundle")
    signature = _decode_base64(envelope["signature"], "envelope.signature")
    try:
        public_key.verify(signature, CONTENT_SIGNATURE_CONTEXT + signed)
    except InvalidSignature:
        raise BundleError("signature does not verify with the centre's key") from None
    data = _parse_json(signed, "bundle")
    return check_bundle(data, digest=hashlib.sha256(signed).hexdigest(), payload=payload)


def _check_payload_size(payload: bytes, max_bytes: int) -> None:
    if not payload:
        raise BundleError("the payload is empty (no bundle, or a cleared retained message)")
    if len(payload) > max_bytes:
        raise BundleError(f"the payload is {len(payload)} bytes, more than the {max_bytes} allowed")


def _parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{what}: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise BundleError(f"{what}: not JSON: {exc}") from None
    except RecursionError:
        raise BundleError(f"{what}: nested too deeply") from None


def _decode_base64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{where}: not base64") from None


_validators: dict[int, jsonschema.Draft7Validator] = {}


def _check_schema(schema: dict[str, Any], value: Any, root: str, prefix: str = "") -> None:
    validator = _validators.get(id(schema))
    if validator is None:  # schemas are module constants of the contract: one validator each, kept
        validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
        _validators[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = prefix + _path(error.absolute_path) if error.absolute_path else root
        raise BundleError(f"{where}: {_shorten(error.message)}")


def _path(parts: Iterable[str | int]) -> str:
    """A JSON path as the messages write it: ``items[2].image.type``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".")


def _shorten(message: str) -> str:
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 4] + " ..."


# -- checking a bundle -----------------------------------------------------------------


def check_bundle(data: Any, digest: str, payload: bytes = b"") -> Bundle:
    """A :class:`Bundle` from parsed bundle JSON: the contract's schema, then what it cannot say."""
    items = data.get("items") if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > CONTENT_MAX_ITEMS:
        raise BundleError(f"items: {len(items)} items, more than the {CONTENT_MAX_ITEMS} allowed")
    _check_schema(CONTENT_BUNDLE_SCHEMA, data, "bundle")
    checked = tuple(_item(f"items[{index}]", raw) for index, raw in enumerate(data["items"]))
    _check_unique_ids(checked)
    issued = _unix_time(data["issued"], "issued")
    return Bundle(data["id"], data["version"], issued, checked, digest, payload)


def _check_unique_ids(items: Sequence[Item]) -> None:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in first:
            raise BundleError(f"items[{index}].id: {item.id!r} is already the id of items[{first[item.id]}]")
        first[item.id] = index


def _item(where: str, raw: dict[str, Any]) -> Item:
    valid_from = _optional_time(raw.get("valid_from"), f"{where}.valid_from")
    valid_until = _optional_time(raw.get("valid_until"), f"{where}.valid_until")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise BundleError(f"{where}.valid_until: {raw['valid_until']} is not after valid_from {raw['valid_from']}")
    title = _localized(raw["title"], f"{where}.title", _plain)
    body = _localized(raw["body"], f"{where}.body", _paragraphs)
    image = _image(raw.get("image"), f"{where}.image")
    return Item(raw["id"], raw["priority"], raw["pinned"], valid_from, valid_until, title, body, image)


def _localized(raw: dict[str, Any], where: str, check: Callable[[Any, str], T]) -> Localized[T]:
    texts = {lang: check(raw[lang], f"{where}.{lang}") for lang in CONTENT_LANGS if lang in raw}
    return Localized(texts["zh"], texts.get("en"))


def _paragraphs(raw: list[str], where: str) -> tuple[str, ...]:
    return tuple(_plain(text, f"{where}[{index}]") for index, text in enumerate(raw))


def _plain(text: str, where: str) -> str:
    """``text`` if it is plain text the page can show as written."""
    if not text.strip():
        raise BundleError(f"{where}: is blank")
    control = _CONTROL.search(text)
    if control:
        code = f"U+{ord(control.group()):04X}"
        raise BundleError(f"{where}: contains a control character ({code}); write each paragraph as its own string")
    markup = _MARKUP.search(text)
    if markup:
        raise BundleError(f"{where}: looks like HTML ({markup.group()!r}); text is shown exactly as written")
    return text


def _optional_time(value: str | None, where: str) -> float | None:
    return None if value is None else _unix_time(value, where)


def _unix_time(value: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BundleError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BundleError(f"{where}: {value!r} has no time zone (add Z or +08:00)")
    return moment.timestamp()


def _image(raw: dict[str, Any] | None, where: str) -> Image | None:
    if raw is None:
        return None
    data = _decode_base64(raw["data"], f"{where}.data")
    if len(data) > CONTENT_IMAGE_MAX_BYTES:
        raise BundleError(f"{where}: {len(data)} bytes, more than the {CONTENT_IMAGE_MAX_BYTES} allowed")
    media_type = raw["type"]
    if sniff_image_type(data) != media_type:
        raise BundleError(f"{where}: data is not a {IMAGE_TYPE_NAMES[media_type]}")
    return Image.of(media_type, data, _localized(raw["alt"], f"{where}.alt", _plain))


def sniff_image_type(data: bytes) -> str | None:
    """The media type the first bytes of ``data`` say (JPEG, PNG or WebP), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def inline_image_files(bundle: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of ``bundle`` whose images given as ``{"file": ..., "alt": ...}`` (relative to ``folder``)
    are written out as ``{"type": ..., "data": <base64>, "alt": ...}``: how the centre's CLI reads a bundle."""
    inlined: dict[str, Any] = copy.deepcopy(dict(bundle))
    items = inlined.get("items")
    for index, item in enumerate(items if isinstance(items, list) else []):
        image = item.get("image") if isinstance(item, dict) else None
        if isinstance(image, dict) and "file" in image:
            item["image"] = _inline_image(image, folder, f"items[{index}].image.file")
    return inlined


def _inline_image(image: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
    path = folder / str(image["file"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    media_type = sniff_image_type(data)
    if media_type is None:
        raise BundleError(f"{where}: {path} is not a JPEG, PNG or WebP image")
    rest = {key: value for key, value in image.items() if key != "file"}
    return dict(rest, type=media_type, data=base64.b64encode(data).decode())


_default: Bundle | None = None


def default_bundle() -> Bundle:
    """The built-in default content (:mod:`captive_portal.default_content`), checked like any bundle."""
    global _default
    if _default is None:
        unsigned = bundle_bytes(DEFAULT_BUNDLE)
        _default = check_bundle(json.loads(unsigned), digest=hashlib.sha256(unsigned).hexdigest())
    return _default


# -- the store -------------------------------------------------------------------------


class ContentStore:
    """The content the portal shows: the newest verified bundle, cached in ``cache_dir``.

    ``public_key`` None (no uplink) shows the built-in default only and refuses every offer.
    Safe to use from two threads: :meth:`offer` from the MQTT client's, the rest from the server's.
    """

    def __init__(self, cache_dir: Path, public_key: Ed25519PublicKey | None, max_bytes: int) -> None:
        self.cache_dir = Path(cache_dir)
        self.public_key = public_key
        self.max_bytes = max_bytes
        self._default = default_bundle()
        self._lock = threading.Lock()
        self._bundle = self._load_cache() if public_key is not None else None

    @property
    def bundle(self) -> Bundle:
        """The bundle in use: the newest accepted one, or the built-in default."""
        return self._bundle or self._default

    @property
    def revision(self) -> str:
        """A short string that changes whenever the bundle in use changes (a page cache key)."""
        bundle = self.bundle
        return f"{bundle.version}-{bundle.digest[:12]}"

    @property
    def payload_path(self) -> Path:
        return self.cache_dir / PAYLOAD_FILE

    def offer(self, payload: bytes | bytearray) -> Bundle:
        """Verify ``payload`` and, if it is newer than the bundle in use, cache it and use it.

        The same bundle again is returned as it is. :class:`BundleError` for anything else;
        the content in use and the cache are then left exactly as they were.
        """
        if self.public_key is None:
            raise BundleError("no centre key configured")
        offered = verify_bundle(bytes(payload), self.public_key, self.max_bytes)
        with self._lock:
            current = self.bundle
            if offered.digest == current.digest:
                return current
            # the highest version ever accepted is kept apart from the cache, so losing the cache
            # (a damaged card, a wiped folder) cannot let an older signed bundle back in
            _check_newer(offered.version, max(current.version, self._highest_version()))
            self._save(offered)
            write_atomically(self._floor_path, str(offered.version).encode())
            self._bundle = offered
        return offered

    @property
    def _floor_path(self) -> Path:
        return self.cache_dir / "highest-version"

    def _highest_version(self) -> int:
        try:
            text = self._floor_path.read_text().strip()
        except OSError:
            return 0
        return int(text) if text.isdigit() else 0

    def current_items(self, now: float) -> list[Item]:
        """The items to show at ``now``: pinned first, then by priority; the default's if none is valid."""
        valid = [item for item in self.bundle.items if item.valid_at(now)]
        return sorted(valid or self._default.items, key=display_order)

    def image(self, name: str) -> tuple[bytes, str] | None:
        """The bytes and media type of the image called ``name`` (``<sha256>.<ext>``) in the bundle
        in use; None for any other name (nothing from the name ever reaches the filesystem)."""
        if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name):
            return None
        image = self.bundle.images().get(name)
        return None if image is None else (image.data, image.media_type)

    # -- the cache ---------------------------------------------------------------------

    def _load_cache(self) -> Bundle | None:
        assert self.public_key is not None
        try:
            payload = self.payload_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("the cached content cannot be read, using the built-in default: %s", exc)
            return None
        try:
            bundle = verify_bundle(payload, self.public_key, self.max_bytes)
        except BundleError as exc:
            log.error("the cached content %s is refused, using the built-in default: %s", self.payload_path, exc)
            return None
        try:
            self._save_images(bundle)  # in case the pictures were lost; they are served from memory anyway
        except OSError as exc:
            log.warning("the cached content's pictures cannot be written: %s", exc)
        return bundle

    def _save(self, bundle: Bundle) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._save_images(bundle)  # named by content: harmless if the switch below never happens
            write_atomically(self.payload_path, bundle.payload)
        except OSError as exc:
            problem = f"the cache in {self.cache_dir} cannot be written ({exc}); kept the content in use"
            raise BundleError(problem) from None
        self._remove_unused_images(bundle)

    def _save_images(self, bundle: Bundle) -> None:
        folder = self.cache_dir / IMAGE_FOLDER
        for name, image in bundle.images().items():
            path = folder / name
            if not (path.is_file() and path.stat().st_size == len(image.data)):
                folder.mkdir(parents=True, exist_ok=True)
                write_atomically(path, image.data)

    def _remove_unused_images(self, bundle: Bundle) -> None:
        folder = self.cache_dir / IMAGE_FOLDER
        used = bundle.images()
        try:
            stale = [path for path in folder.iterdir() if IMAGE_NAME.fullmatch(path.name) and path.name not in used]
            for path in stale:
                path.unlink()
        except OSError as exc:
            log.warning("old pictures in %s could not be removed: %s", folder, exc)


def _check_newer(offered: int, cached: int) -> None:
    if offered < cached:
        raise BundleError(f"version {offered} is older than the cached version {cached}")
    if offered == cached:
        raise BundleError(f"version {offered} is the cached version but a different bundle (give it a higher version)")
