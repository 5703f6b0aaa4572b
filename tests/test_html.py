"""HTML from mail: sanitised for serving (allow-list, remote content blocked) and as text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litemx.core.html import LINK_REL, html_to_text, sanitize_html


def test_scripts_and_their_content_are_removed() -> None:
    cleaned = sanitize_html("<p>hi</p><script>alert(1)</script><SCRIPT src=x></SCRIPT>")
    assert cleaned == "<p>hi</p>"


@pytest.mark.parametrize("html", [
    '<p onclick="steal()">x</p>', '<img src="cid:a@b" onerror="steal()">', '<body onload="steal()">x</body>',
    '<a href="https://e.com" onmouseover="steal()">x</a>', '<div OnClick="steal()">x</div>',
])
def test_event_handler_attributes_are_removed(html: str) -> None:
    assert "steal" not in sanitize_html(html).lower()


@pytest.mark.parametrize("href", ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "vbscript:x", "data:text/html,<b>",
                                  "/relative/path", "file:///etc/passwd", "jav&#x09;ascript:alert(1)"])
def test_links_to_anything_but_web_and_mail_lose_their_target(href: str) -> None:
    cleaned = sanitize_html(f'<a href="{href}">x</a>')
    assert "href" not in cleaned and ">x</a>" in cleaned


def test_links_open_in_a_new_tab_without_referrer_or_opener() -> None:
    cleaned = sanitize_html('<a href="https://example.com/x" target="_self" rel="opener">x</a>')
    assert 'href="https://example.com/x"' in cleaned
    assert 'target="_blank"' in cleaned and f'rel="{LINK_REL}"' in cleaned
    assert "_self" not in cleaned and '"opener"' not in cleaned


def test_mailto_links_are_kept() -> None:
    assert 'href="mailto:a@example.com"' in sanitize_html('<a href="mailto:a@example.com">mail</a>')


@pytest.mark.parametrize("src", ["http://tracker.example/p.gif", "https://tracker.example/p.gif?u=1",
                                 "//tracker.example/p.gif", "HTTPS://X/Y", "data:image/svg+xml;base64,PHN2Zz4="])
def test_remote_images_are_blocked_but_keep_their_alt_text(src: str) -> None:
    cleaned = sanitize_html(f'<img src="{src}" alt="Logo" width="10">')
    assert "src=" not in cleaned and 'alt="Logo"' in cleaned and "tracker" not in cleaned


def test_cid_and_inline_raster_images_are_kept() -> None:
    assert '<img src="cid:logo@example.com">' == sanitize_html('<img src="cid:logo@example.com">')
    inline = '<img src="data:image/png;base64,iVBORw0KGgo=">'
    assert sanitize_html(inline) == inline


def test_srcset_and_background_attributes_cannot_load_images() -> None:
    cleaned = sanitize_html('<img srcset="https://t/x 1x"><table background="https://t/bg.png"><tr><td>x</td></tr></table>')
    assert "https://t" not in cleaned


@pytest.mark.parametrize("tag", ["iframe", "form", "object", "embed", "style", "link", "meta", "base", "svg", "video"])
def test_embedding_and_form_tags_are_removed(tag: str) -> None:
    cleaned = sanitize_html(f'<{tag} src="https://x/" action="https://x/" href="https://x/">inner</{tag}>ok')
    assert f"<{tag}" not in cleaned and "https://x" not in cleaned and cleaned.endswith("ok")


@pytest.mark.parametrize("style", ["background:url(https://t/x.png)", "background-image: url('x')",
                                   "list-style: url(x)", "color: red; b\\61 ckground: u\\72l(x)",
                                   "width: expression(alert(1))", "behavior: url(x.htc)"])
def test_css_that_can_load_urls_is_dropped(style: str) -> None:
    cleaned = sanitize_html(f'<p style="{style}">x</p>')
    assert "url" not in cleaned.lower() and "style" not in cleaned


def test_harmless_inline_styles_are_kept_and_filtered_by_property() -> None:
    cleaned = sanitize_html('<p style="color: red; position: fixed; font-weight: bold">x</p>')
    assert cleaned == '<p style="color:red;font-weight:bold">x</p>'


def test_document_metadata_and_comments_are_dropped() -> None:
    cleaned = sanitize_html("<html><head><title>T</title><style>p{}</style></head><body><!-- c --><p>b</p></body></html>")
    assert cleaned == "<p>b</p>"


def test_email_table_layout_survives() -> None:
    html = '<table border="0" cellpadding="2" width="600"><tr><td colspan="2" align="center" bgcolor="#fff">x</td></tr></table>'
    cleaned = sanitize_html(html)
    assert 'cellpadding="2"' in cleaned and 'colspan="2"' in cleaned and 'bgcolor="#fff"' in cleaned


def test_nul_bytes_are_removed() -> None:
    assert "\x00" not in sanitize_html("<p>a\x00b</p>")


def test_html_to_text_keeps_structure() -> None:
    text = html_to_text("<h1>Title</h1><p>First <b>bold</b></p><ul><li>one</li><li>two</li></ul>")
    assert text == "Title\n\nFirst bold\n\n  * one\n  * two"


def test_html_to_text_of_empty_or_broken_markup_is_safe() -> None:
    assert html_to_text("") == "" and html_to_text("  \n ") == ""
    assert html_to_text("<!-- only a comment -->") == ""
    assert html_to_text("<p>unclosed <b>tags") == "unclosed tags"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_sanitises_without_script_and_converts_to_text(html: str) -> None:
    cleaned = sanitize_html(html)
    assert "<script" not in cleaned.lower() and "\x00" not in cleaned
    html_to_text(html)
    html_to_text(cleaned)


_HTMLISH = st.lists(st.sampled_from([
    "<script>", "</script>", "<img src=", "'http://t/x'", "cid:a", "<a href=", "javascript:", "onerror=",
    "<style>", "url(", "<p>", "</p>", '"', ">", "<", "<!--", "-->", "<svg><script>", "&lt;", "<iframe",
]), max_size=30).map("".join)


class _Audit(HTMLParser):
    """Collects what a browser would act on in sanitised output: tags and their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


@settings(max_examples=300, deadline=None)
@given(_HTMLISH)
def test_markup_shaped_noise_never_yields_scripts_handlers_or_remote_images(html: str) -> None:
    audit = _Audit()
    audit.feed(sanitize_html(html))
    for tag, attrs in audit.tags:
        assert tag in ("a", "img", "p")
        for name, value in attrs:
            assert not name.startswith("on")
            if name == "src":
                assert (value or "").startswith(("cid:", "data:image/"))
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:"))
