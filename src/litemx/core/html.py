"""HTML from untrusted mail: sanitised for serving, or rendered as plain text.

`sanitize_html` is an explicit allow-list over nh3 (ammonia): formatting and table markup
survive, anything that can run code, submit data, load a document or phone home does not.

Remote content is blocked: an `<img>` whose `src` is not `cid:` (or an inline `data:` raster
image) loses its `src` and keeps its `alt`, so no tracking pixel fires when a message is
opened. `cid:` references are kept verbatim (RFC 2392); the API layer maps them to the
attachment download route when it serves the HTML. CSS `url()` is refused: only properties
that cannot load anything are allowed, and a `style` attribute mentioning `url`, `image`,
`expression`, `@import` or a CSS escape is dropped whole.
"""

from __future__ import annotations

import re

import inscriptis
import nh3

_TAGS = {
    "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol",
    "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var", "wbr",
}
# Removed together with their content: code, styles, document metadata and embedded documents.
_CLEAN_CONTENT_TAGS = {
    "script", "style", "title", "head", "template", "iframe", "object", "embed", "svg", "math",
    "noembed", "noframes", "textarea", "select",
}
_ATTRIBUTES = {
    "*": {"align", "valign", "dir", "lang", "title", "style", "width", "height", "bgcolor"},
    "a": {"href"},
    "img": {"src", "alt", "border"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
}
# Properties that take no URL in any CSS level (so no background, list-style, cursor, content,
# border-image, mask...): colours, fonts, text and box geometry only.
_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "font-variant", "line-height", "letter-spacing", "word-spacing",
    "text-align", "text-decoration", "text-indent", "text-transform", "white-space",
    "vertical-align", "direction", "margin", "margin-top", "margin-right", "margin-bottom",
    "margin-left", "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
    "border", "border-top", "border-right", "border-bottom", "border-left", "border-color",
    "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    "width", "height", "max-width", "min-width", "max-height", "min-height", "display",
    "table-layout",
}
_URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_INLINE_IMAGE = re.compile(r"^(?:cid:|data:image/(?:png|gif|jpeg|webp);base64,)", re.IGNORECASE)
_DANGEROUS_CSS = re.compile(r"url|image|expression|@import|\\|behavior|binding", re.IGNORECASE)
LINK_REL = "noopener noreferrer nofollow"


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Per-attribute rules nh3's allow-list cannot express; None drops the attribute."""
    if tag == "img" and attribute == "src":
        return value if _INLINE_IMAGE.match(value.strip()) else None  # remote image: blocked
    if tag == "a" and attribute == "href":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if attribute == "style":
        return None if _DANGEROUS_CSS.search(value) else value
    return value


def sanitize_html(html: str) -> str:
    """Allow-listed HTML safe to show in a browser (links open in a new, unprivileged tab).

    Removes script/style/iframe/form and every `on*` attribute, `javascript:`/`data:` links,
    remote images (their `src`) and CSS that could load a URL. `cid:` image sources are kept.
    """
    return nh3.clean(
        html.replace("\x00", ""),
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        strip_comments=True,
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        filter_style_properties=_STYLE_PROPERTIES,
    )


def html_to_text(html: str) -> str:
    """Readable plain text from HTML (inscriptis keeps table and list layout); never raises
    on malformed markup — inscriptis' lxml parser recovers — and returns "" for empty input."""
    cleaned = html.replace("\x00", "")
    if not cleaned.strip():
        return ""
    return inscriptis.get_text(cleaned).strip()
