"""How the pages look in headless Chromium: the light and dark schemes as the system asks for
them, the archetypes' and the person's colours as rendered, and the phone's width."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from coloraide import Color
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.colours import contrast, luminance
from tests.factories import AGENT_IDS
from tests.live import LiveServer, serve_in_thread, stop_server
from tests.web.accounts import team
from tests.web.sse import finished_session
from tests.web.test_browser import SCREENSHOTS, WAIT_MS

pytestmark = pytest.mark.browser

Scheme = Literal["light", "dark"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get(SCREENSHOTS)
    return Path(named) if named else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """10 deltas a second: a round runs long enough to look at it running."""
    server = serve_in_thread(tmp_path_factory.mktemp("look-slow"), offline_tps="10")
    yield server
    stop_server(server)


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens a page in a new context of the given scheme; closes them all after the test."""
    contexts: list[BrowserContext] = []

    def open_(scheme: Scheme, **options: Any) -> Page:
        context = browser.new_context(color_scheme=scheme, **options)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


def computed(page: Page, selector: str, prop: str) -> Color:
    """A property's computed colour on the first element ``selector`` finds."""
    value = page.locator(selector).first.evaluate(
        "(e, prop) => getComputedStyle(e).getPropertyValue(prop)", prop
    )
    return Color(str(value))


def backdrop(page: Page, selector: str) -> Color:
    """The colour behind an element: its own background or its nearest opaque ancestor's."""
    value = page.locator(selector).first.evaluate(
        """e => {
            for (let n = e; n; n = n.parentElement) {
                const bg = getComputedStyle(n).backgroundColor;
                const alpha = bg.startsWith('rgba') ? parseFloat(bg.split(',')[3]) : 1;
                if (alpha > 0.5) return bg;
            }
            return getComputedStyle(document.body).backgroundColor;
        }"""
    )
    return Color(str(value))


# --- the two schemes ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_page_follows_the_system_scheme(
    fast_server: LiveServer, open_page: OpenPage, shots: Path, scheme: Scheme
) -> None:
    with fast_server.client() as client:
        session_id = finished_session(client, "My flatmate ate my birthday cake and lied")
    page = open_page(scheme, viewport={"width": 1100, "height": 760})
    page.goto(f"{fast_server.url}/s/{session_id}")
    expect(page.locator(".turn-final")).to_have_count(5)

    background = computed(page, "body", "background-color")
    text = computed(page, "body", "color")
    card = computed(page, ".turn-final", "background-color")
    if scheme == "dark":
        assert luminance(background) < 0.03 and luminance(card) < 0.05
        assert luminance(text) > 0.6
    else:
        assert luminance(background) > 0.8 and luminance(card) > 0.9
        assert luminance(text) < 0.05

    # Each archetype's name is readable on its card; its avatar's initial on the avatar.
    for agent in AGENT_IDS:
        card_selector = f'.turn-final[data-agent="{agent}"]'
        name = computed(page, f"{card_selector} .name", "color")
        assert contrast(name, backdrop(page, card_selector)) >= 4.5, (agent, scheme)
        avatar = f"{card_selector} .avatar"
        initial = computed(page, avatar, "color")
        assert contrast(initial, computed(page, avatar, "background-color")) >= 4.5
        edge = page.locator(card_selector).evaluate(
            "e => getComputedStyle(e, '::before').backgroundColor"
        )
        assert contrast(Color(str(edge)), backdrop(page, card_selector)) >= 3.0

    # The person's message and the Send button: readable, and not Shadow's navy.
    person = computed(page, ".situation", "background-color")
    assert contrast(computed(page, ".situation", "color"), person) >= 4.5
    send = computed(page, ".send", "background-color")
    assert contrast(computed(page, ".send", "color"), send) >= 4.5
    shadow_edge = Color(
        str(
            page.locator('.turn-final[data-agent="Shadow"]').evaluate(
                "e => getComputedStyle(e, '::before').backgroundColor"
            )
        )
    )
    for own in (person, send):
        assert own.delta_e(shadow_edge, method="2000") > 15
        assert own.delta_e("#2c3e50", method="2000") > 15
    # The composer's field, the status line, a turn's facts and whom it heard.
    for selector in ("#situation", ".round-end-text", ".status", ".turn-meta", ".turn-heard"):
        ratio = contrast(computed(page, selector, "color"), backdrop(page, selector))
        assert ratio >= 4.5, (selector, scheme, ratio)

    if scheme == "dark":
        page.screenshot(path=str(shots / "screenshot-dark.png"))

    # The pictures: nodes and lines in the scheme's tones, labels in its text colour.
    page.locator(".pictures-panel > summary").click()
    panel = backdrop(page, "#picture-network")
    for agent in AGENT_IDS:
        node = f'#picture-network .node[data-agent="{agent}"] circle'
        assert contrast(computed(page, node, "fill"), panel) >= 3.0, (agent, scheme)
        line = f'#picture-sentiment [data-agent="{agent}"] polyline'
        assert contrast(computed(page, line, "stroke"), panel) >= 3.0, (agent, scheme)
    for label in ("#picture-network .node text", "#picture-state .axes text"):
        assert contrast(computed(page, label, "fill"), panel) >= 4.5, (label, scheme)
    threshold = "#picture-state .threshold text"
    assert contrast(computed(page, threshold, "fill"), panel) >= 4.5
    for metric in ("conflict", "engagement", "diversity", "repetition", "intensity"):
        line = f'#picture-state [data-metric="{metric}"] polyline'
        assert contrast(computed(page, line, "stroke"), panel) >= 3.0, (metric, scheme)
    # The grid follows the text colour, faintly: there, and lighter than the labels.
    grid = computed(page, "#picture-state .axes line", "stroke")
    assert grid == computed(page, "#picture-state .axes text", "fill")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_page_reads_in_both_schemes(
    fast_server: LiveServer,
    open_page: OpenPage,
    tmp_path_factory: pytest.TempPathFactory,
    scheme: Scheme,
) -> None:
    with fast_server.client() as client:
        session_id = finished_session(client, "A page of its own")
    page = open_page(scheme)
    pages = {
        "/": ".intro h1",
        "/sessions": ".sheet h1",
        f"/s/{session_id}/rename": ".sheet h1",
        f"/s/{session_id}/delete": ".sheet h1",
        "/status": ".sheet h1",
        "/s/no-such-session": ".error-page h1",
    }
    for path, heading in pages.items():
        page.goto(fast_server.url + path)
        background = computed(page, "body", "background-color")
        assert (luminance(background) < 0.03) == (scheme == "dark"), path
        for selector in (heading, ".topbar-link", ".badge-offline"):
            ratio = contrast(computed(page, selector, "color"), backdrop(page, selector))
            assert ratio >= 4.5, (path, selector, scheme, ratio)
        for selector in (".button", ".session-facts", ".error-page p", ".council strong"):
            if page.locator(selector).count():
                ratio = contrast(computed(page, selector, "color"), backdrop(page, selector))
                assert ratio >= 4.5, (path, selector, scheme, ratio)

    with team(tmp_path_factory.mktemp("look-login")) as crew:
        page = open_page(scheme)
        page.goto(f"{crew.server.url}/login")
        expect(page.locator("h1")).to_have_text("Sign in")
        for selector in ("h1", "label", ".button"):
            ratio = contrast(computed(page, selector, "color"), backdrop(page, selector))
            assert ratio >= 4.5, ("/login", selector, scheme, ratio)
        field = computed(page, "#name", "border-top-color")
        assert contrast(field, backdrop(page, "#name")) >= 3.0


# --- a phone --------------------------------------------------------------------------------

NO_OVERFLOW = """() => {
    const wide = [];
    const limit = window.innerWidth;
    if (document.scrollingElement.scrollWidth > limit) wide.push('document');
    for (const e of document.querySelectorAll(
            '.conversation, .dock, .sessionbar, .topbar, .sheet, .turn, .status, .composer,'
            + ' .picture svg, .pictures-panel')) {
        const box = e.getBoundingClientRect();
        if (box.width && (box.right > limit + 0.5 || box.left < -0.5)) wide.push(e.className);
        if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'hidden')
            wide.push(e.className + ' scrolls');
    }
    return wide;
}"""

# The room a field's placeholder has, and the width of the placeholder in the field's font.
PLACEHOLDER = """e => {
    const style = getComputedStyle(e);
    const room = e.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const canvas = document.createElement('canvas').getContext('2d');
    canvas.font = style.font;
    return {room, text: canvas.measureText(e.placeholder).width, placeholder: e.placeholder};
}"""


def placeholder_fits(page: Page, selector: str) -> None:
    measure = page.locator(selector).evaluate(PLACEHOLDER)
    assert measure["text"] <= measure["room"], measure


def test_a_phone_in_the_dark_shows_everything_without_sideways_scrolling(
    slow_server: LiveServer, open_page: OpenPage, shots: Path
) -> None:
    page = open_page("dark", viewport=PHONE, is_mobile=True, has_touch=True)
    page.goto(slow_server.url)
    assert page.evaluate(NO_OVERFLOW) == []
    placeholder_fits(page, "#situation")

    page.fill("#situation", "My manager took credit for my report in front of the whole team")
    page.press("#situation", "Enter")
    # While the council answers: the field says so, whole, beside Stop.
    expect(page.locator("#situation")).to_have_attribute(
        "placeholder", "The council is answering…", timeout=WAIT_MS
    )
    expect(page.locator(".stop-button")).to_be_visible()
    expect(page.locator(".turn-live .turn-text").first).not_to_be_empty(timeout=WAIT_MS)
    placeholder_fits(page, "#situation")
    placeholder_fits(page, "#stimulus-text")
    assert page.evaluate(NO_OVERFLOW) == []
    expect(page.locator(".sessionbar-title")).to_be_visible()
    page.screenshot(path=str(shots / "screenshot-phone-dark.png"))
    page.locator(".stop-button").click()
    expect(page.locator(".round-end-text")).to_contain_text("stopped", timeout=WAIT_MS)
    expect(page.locator("#situation")).to_be_enabled()

    page.locator(".pictures-panel > summary").click()
    expect(page.locator("#picture-network svg")).to_be_visible()
    assert page.evaluate(NO_OVERFLOW) == []
    for path in ("/sessions", "/status"):
        page.goto(slow_server.url + path)
        assert page.evaluate(NO_OVERFLOW) == [], path
