"""The portal's pages: plain server-rendered HTML, no JavaScript, one small inline stylesheet.

Written for the phones parents really have: a slow Android in a captive-portal window or
iOS's mini-browser (which keeps no cookies between openings and shows "Done" only after a
full navigation, so accepting is an ordinary form POST answered by a redirect).  Every
text from the centre or the config is HTML-escaped here; nothing is taken as markup.
Simplified Chinese is the default language, English the other.

>>> page = splash(Copy.of(LANGS["zh"], "城南小学", "条款"), [], token="t", lang="zh")
>>> '<html lang="zh-CN">' in page and 'action="/accept"' in page and "城南小学" in page
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Protocol


class ItemLike(Protocol):
    id: str
    pinned: bool

    def title_in(self, lang: str) -> str: ...

    def paragraphs_in(self, lang: str) -> Sequence[str]: ...

    def image_in(self, lang: str) -> tuple[str, str] | None: ...  # (file name, alt text)


@dataclass(frozen=True)
class Lang:
    code: str
    html_lang: str
    name: str  # the language's own name, for the switch link
    wifi: str
    free_wifi: str
    accept: str
    accepted: str
    minutes_left: str
    extend: str
    urgent: str
    privacy: str
    to_accept: str
    out_of_date: str
    not_on_wifi: str
    back: str
    busy: str


LANGS = {
    "zh": Lang(
        "zh",
        "zh-CN",
        "中文",
        wifi="校门WiFi",
        free_wifi="等候接孩子的家长可免费上网。请先阅读下面的安全提示。",
        accept="同意条款并上网",
        accepted="已连接，可以上网了",
        minutes_left="本次上网还剩 {minutes} 分钟，到时需再次同意。",
        extend="延长上网时间",
        urgent="紧急通知",
        privacy="依法记录上网时间和设备地址，保存 {days} 天后自动删除；统计数据不含个人信息。",
        to_accept="跳到同意按钮",
        out_of_date="页面已过期，请重新点击同意。",
        not_on_wifi="此页面只供连接校门WiFi的设备使用。",
        back="返回首页",
        busy="暂时无法开通上网，请稍后再试。",
    ),
    "en": Lang(
        "en",
        "en",
        "English",
        wifi="Gate WiFi",
        free_wifi="Free internet for parents waiting at the gate. Please read the safety notes below first.",
        accept="Accept the terms and go online",
        accepted="You are online",
        minutes_left="{minutes} minutes left in this session; then you accept again.",
        extend="Extend my time",
        urgent="Urgent notice",
        privacy="As the law requires, connection times and device addresses are logged and deleted after {days} days;"
        " statistics hold no personal data.",
        to_accept="Skip to the accept button",
        out_of_date="This page is out of date. Please accept again.",
        not_on_wifi="This page is only for devices on the gate WiFi.",
        back="Back to the start page",
        busy="Internet access cannot be opened right now. Please try again shortly.",
    ),
}
DEFAULT_LANG = "zh"

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:17px/1.6 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
color:#1a1a1a;background:#fff}
header,main,footer{max-width:40rem;margin:0 auto;padding:0 1rem}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:4px solid #b30000}
h1{font-size:1.3rem;margin:.6rem 0}
h2{font-size:1.1rem;margin:1.2rem 0 .3rem}
a{color:#0645ad}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff}
.urgent{border:3px solid #b30000;background:#fff0f0;padding:.2rem .9rem;margin:1rem 0}
.urgent h2{color:#b30000}
img{max-width:100%;height:auto}
form{margin:1.5rem 0;padding:1rem;background:#f2f2f2}
button{display:block;width:100%;min-height:3rem;font-size:1.1rem;font-weight:bold;color:#fff;background:#b30000;
border:0;border-radius:.4rem;cursor:pointer}
button:focus{outline:3px solid #0645ad;outline-offset:2px}
.ok{font-size:1.2rem;font-weight:bold;color:#006400}
footer{font-size:.85rem;color:#444;border-top:1px solid #ccc;margin-top:2rem;padding-bottom:2rem}
""".strip()


@dataclass(frozen=True)
class Copy:
    """The words of a page: the language's own, the venue's name and the terms from the config."""

    lang: Lang
    venue: str
    terms: str
    retention_days: int = 60

    @classmethod
    def of(cls, lang: Lang, venue: str, terms: str, retention_days: int = 60) -> Copy:
        return cls(lang, venue, terms, retention_days)


def _page(copy: Copy, title: str, body: Iterable[str], refresh: str = "") -> str:
    lang = copy.lang
    other = LANGS["en" if lang.code == "zh" else "zh"]
    return "".join(
        [
            "<!doctype html>",
            f'<html lang="{lang.html_lang}"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            refresh,
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            f'<header><h1>{escape(copy.venue)} · {escape(lang.wifi)}</h1><a href="/?lang={other.code}"',
            f' hreflang="{other.html_lang}" lang="{other.html_lang}">{other.name}</a></header>',
            "<main>",
            *body,
            "</main>",
            f"<footer><p>{escape(lang.privacy.format(days=copy.retention_days))}</p></footer>",
            "</body></html>",
        ]
    )


def _items(items: Sequence[ItemLike], lang: str, urgent_label: str) -> list[str]:
    parts: list[str] = []
    for item in items:
        inner = [f"<h2>{escape(item.title_in(lang))}</h2>"]
        image = item.image_in(lang)
        if image is not None:
            name, alt = image
            inner.append(f'<img src="/img/{escape(name)}" alt="{escape(alt)}" loading="lazy">')
        inner += [f"<p>{escape(p)}</p>" for p in item.paragraphs_in(lang)]
        if item.pinned:
            parts.append(f'<section class="urgent" aria-label="{escape(urgent_label)}">{"".join(inner)}</section>')
        else:
            parts.append(f"<article>{''.join(inner)}</article>")
    return parts


def _accept_form(copy: Copy, token: str, label: str) -> str:
    return (
        f'<form id="accept" method="post" action="/accept"><p>{escape(copy.terms)}</p>'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f'<input type="hidden" name="lang" value="{copy.lang.code}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def splash(copy: Copy, items: Sequence[ItemLike], token: str, lang: str, note: str = "") -> str:
    """The page a phone is sent to before accepting: the notes, the terms and the accept button."""
    body = [f'<a class="skip" href="#accept">{escape(copy.lang.to_accept)}</a>']
    if note:
        body.append(f'<p role="alert"><strong>{escape(note)}</strong></p>')
    body.append(f"<p>{escape(copy.lang.free_wifi)}</p>")
    body += _items(items, lang, copy.lang.urgent)
    body.append(_accept_form(copy, token, copy.lang.accept))
    return _page(copy, copy.lang.wifi, body)


def welcome(copy: Copy, items: Sequence[ItemLike], seconds_left: int, token: str, can_extend: bool) -> str:
    """After accepting: how long is left, the notes again; at the end the page returns to the splash."""
    minutes = max(1, round(seconds_left / 60))
    # At the session's end the page reloads the start page, which is the splash again by then.
    refresh = f'<meta http-equiv="refresh" content="{max(1, seconds_left + 1)};url=/?lang={copy.lang.code}">'
    body = [
        f'<p class="ok" role="status">{escape(copy.lang.accepted)}</p>',
        f"<p>{escape(copy.lang.minutes_left.format(minutes=minutes))}</p>",
    ]
    body += _items(items, copy.lang.code, copy.lang.urgent)
    if can_extend:
        body.append(_accept_form(copy, token, copy.lang.extend))
    return _page(copy, copy.lang.accepted, body, refresh)


def message(copy: Copy, text: str) -> str:
    """A short page with one message and the way back to the start."""
    return _page(copy, text, [f'<p role="alert">{escape(text)}</p><p><a href="/">{escape(copy.lang.back)}</a></p>'])


def venue(copy: Copy, items: Sequence[ItemLike]) -> str:
    """The venue information page (RFC 8908 ``venue-info-url``): the school's notes, no form."""
    return _page(copy, copy.venue, _items(items, copy.lang.code, copy.lang.urgent))


def pick_lang(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` when it names a language we have; else English only if the phone prefers it to Chinese."""
    if query in LANGS:
        return query
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "")[:200].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-quality, position, tag.lower()[:2]))
    for _, _, code in sorted(ranked):
        if code in LANGS:
            return code
    return DEFAULT_LANG
