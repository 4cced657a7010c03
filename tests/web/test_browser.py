"""The page in headless Chromium (Debian's), driven by Playwright: what a person sees."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from tests.factories import AGENT_IDS
from tests.live import LiveServer, kill_server, start_server, stop_server
from tests.saved import saved_partial
from tests.web.conftest import SeededServer
from tests.web.sse import finished_session

pytestmark = pytest.mark.browser

# Screenshots go to a temporary folder, or to PSYCHE_SCREENSHOTS (``make docs`` names docs/):
# the test suite leaves the tree as it found it.
SCREENSHOTS = "PSYCHE_SCREENSHOTS"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """25 words a second: a turn takes about three seconds, long enough to watch it grow and
    to reload the page in the middle of it on a loaded machine."""
    server = start_server(tmp_path_factory.mktemp("browser"), offline_tps="25")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go."""
    named = os.environ.get(SCREENSHOTS)
    return Path(named) if named else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A page whose script errors and console errors fail the test."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert console_errors == [], console_errors


def live_card(page: Page, agent: str) -> Locator:
    return page.locator(".turn-live", has=page.locator(f'.name:text-is("{agent}")'))


def live_text(page: Page, agent: str) -> str:
    return str(live_card(page, agent).locator(".turn-text").text_content() or "")


def wait_for_live_text(page: Page, agent: str, longer_than: int) -> str:
    """Wait until the agent's streaming text is longer than ``longer_than``; return it."""
    page.wait_for_function(
        """([agent, n]) => [...document.querySelectorAll('.turn-live')]
            .some(c => c.querySelector('.name').textContent === agent
                && c.querySelector('.turn-text').textContent.length > n)""",
        arg=[agent, longer_than],
        timeout=WAIT_MS,
    )
    return live_text(page, agent)


def scroll_state(page: Page) -> float:
    """How far above the bottom the conversation is scrolled (0: at the bottom)."""
    return float(page.evaluate("() => -document.querySelector('#conversation').scrollTop"))


def send(page: Page, situation: str) -> None:
    page.fill("#situation", situation)
    page.press("#situation", "Enter")


def test_a_round_live_in_the_browser(
    server: LiveServer, browser: Browser, page: Page, shots: Path
) -> None:
    page.goto(server.url)
    expect(page.locator("#conversation")).to_have_attribute("role", "log")
    expect(page.locator(".badge-offline")).to_have_text("Offline demo model")
    send(page, "I was passed over for a promotion I had worked towards for two years")

    # Thinking indicator, then text that grows, while the form is off and Stop is on.
    expect(page.locator(".turn-live .thinking").first).to_have_text("Shadow is thinking…")
    expect(page.locator("#status")).to_contain_text("Shadow (1 of 5): processing…")
    expect(page.locator("#situation")).to_be_disabled()
    expect(page.locator(".stop-button")).to_be_visible()
    first = wait_for_live_text(page, "Shadow", 0)
    # Once its text has begun, the card no longer says it is thinking.
    label = live_card(page, "Shadow").locator(".thinking")
    assert label.evaluate("e => getComputedStyle(e).display", timeout=2_000) == "none"
    grown = wait_for_live_text(page, "Shadow", len(first) + 20)
    assert grown.startswith(first)
    expect(page).to_have_url(f"{server.url}/s/" + page.url.rsplit("/", 1)[-1])
    session_url = page.url

    # A second viewer of the same session, at phone width.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    second = phone.new_page()
    second.goto(session_url)

    # Reload mid-turn: the text so far is in the page at once, and it carries on.
    before = wait_for_live_text(page, "Anima/Animus", 30)
    page.reload()
    after_reload = live_text(page, "Anima/Animus")
    assert len(after_reload) >= len(before)
    continued = wait_for_live_text(page, "Anima/Animus", len(after_reload) + 20)
    assert continued.startswith(after_reload)

    # At the bottom while Self speaks: the view follows the text.
    wait_for_live_text(page, "Self", 60)
    assert scroll_state(page) < 2
    page.screenshot(path=str(shots / "screenshot.png"))
    # The reader scrolls up: what they read stays where it is while the text grows.
    page.mouse.move(550, 300)
    page.mouse.wheel(0, -250)
    page.wait_for_function("() => document.querySelector('#conversation').scrollTop < -100")
    shadow_card = page.locator(".turn-final").first
    top = shadow_card.bounding_box()
    assert top is not None
    now = live_text(page, "Self")
    wait_for_live_text(page, "Self", len(now) + 30)
    moved = shadow_card.bounding_box()
    assert moved is not None
    assert abs(moved["y"] - top["y"]) < 2
    assert scroll_state(page) > 100

    # Five final messages with sentiment badges; the form is back.
    finals = page.locator(".turn-final")
    expect(finals).to_have_count(5, timeout=WAIT_MS)
    expect(page.locator(".turn-live")).to_have_count(0)
    expect(page.locator(".turn-final .sentiment")).to_have_count(5)
    assert finals.locator(".name").all_text_contents() == list(AGENT_IDS)
    expect(page.locator(".round-end-text")).to_contain_text("Round complete in")
    expect(page.locator("#situation")).to_be_enabled()
    expect(page.locator(".stop-button")).to_have_count(0)
    for card in finals.all():  # each announced once, as a whole, by the log
        assert card.get_attribute("aria-hidden") is None

    # What the page streamed across the reload is what the agent said: no gap, no repeat.
    final_text = finals.nth(2).locator(".turn-text").inner_text()
    assert " ".join(final_text.split()).startswith(" ".join(continued.split()))

    expect(second.locator(".turn-final")).to_have_count(5, timeout=WAIT_MS)
    second.screenshot(path=str(shots / "screenshot-phone.png"))
    phone.close()


def test_markup_in_a_situation_is_shown_as_text(server: LiveServer, page: Page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server.url)
    evil = "<img src=x onerror=alert(1)>"
    send(page, evil)
    expect(page.locator(".situation")).to_have_text(evil)
    wait_for_live_text(page, "Shadow", 10)
    # Skip one agent: its turn completes as stopped and the next one speaks.
    page.click("#status button", timeout=5_000)
    expect(page.locator(".turn-final .tag-cancelled")).to_have_count(1)
    wait_for_live_text(page, "Persona", 10)
    # Stop the round: the turn completes as stopped and the form comes back.
    page.click(".stop-button")
    expect(page.locator(".round-end-text")).to_contain_text("stopped")
    expect(page.locator(".turn-final .tag-cancelled")).to_have_count(2)
    expect(page.locator("#situation")).to_be_enabled()
    expect(page.locator("#situation")).to_be_focused()
    assert page.locator("#conversation img").count() == 0
    assert dialogs == []


def test_bad_input_gets_a_message_in_the_page(
    server: LiveServer, page: Page, console_errors: list[str]
) -> None:
    page.goto(server.url)
    send(page, "    ")
    expect(page.locator("#composer-error")).to_have_text("describe a situation: the text is empty")
    expect(page.locator(".round")).to_have_count(0)
    # The browser notes the 400 in its console; that one is expected.
    console_errors[:] = [e for e in console_errors if "status of 400" not in e]


def test_sessions_list_rename_and_delete_without_javascript(
    fast_server: LiveServer, browser: Browser
) -> None:
    """Plain links and forms, a confirmation page for deleting: no script needed."""
    with fast_server.client() as client:
        session_id = finished_session(client, "Browse <me> please")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(fast_server.url)
    page.get_by_role("link", name="Sessions", exact=True).click()
    expect(page).to_have_url(f"{fast_server.url}/sessions")
    item = page.locator(".session-item", has=page.locator(f'a[href="/s/{session_id}"]'))
    expect(item.locator(".session-title")).to_have_text("Browse <me> please")
    expect(item.locator(".session-facts")).to_contain_text("1 round")

    item.get_by_role("link", name="Rename").click()
    expect(page.locator("#title")).to_have_value("Browse <me> please")
    page.fill("#title", "Renamed <b>in</b> the browser")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{fast_server.url}/sessions")
    expect(item.locator(".session-title")).to_have_text("Renamed <b>in</b> the browser")

    # Delete asks first; Cancel keeps it.
    item.get_by_role("link", name="Delete").click()
    expect(page.locator("main h1")).to_have_text("Delete this session?")
    expect(page.locator(".confirm-what")).to_have_text("Renamed <b>in</b> the browser")
    page.get_by_role("link", name="Cancel").click()
    expect(item).to_have_count(1)
    item.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete for good").click()
    expect(page).to_have_url(f"{fast_server.url}/sessions?deleted=1")
    expect(page.locator(".notice")).to_have_text("The session was deleted.")
    expect(item).to_have_count(0)
    page.goto(f"{fast_server.url}/s/{session_id}")
    expect(page.locator(".error-page h1")).to_have_text("Not found")
    context.close()


def test_the_page_connects_its_stream_when_the_sse_extension_loads_late(
    fast_server: LiveServer, page: Page
) -> None:
    """htmx must not start before its SSE extension is registered, however the two scripts'
    downloads end: a slow extension once left a page that never opened its stream."""
    with fast_server.client() as client:
        session_id = finished_session(client, "Slow scripts")

    def slow(route: Route) -> None:
        time.sleep(0.5)  # a slow network, for this one file
        route.continue_()

    page.route("**/vendor/hx-sse-*.js*", slow)
    with page.expect_request(f"**/s/{session_id}/stream*", timeout=WAIT_MS):
        page.goto(f"{fast_server.url}/s/{session_id}")


def test_a_session_reads_without_javascript(
    seeded: SeededServer, fast_server: LiveServer, browser: Browser
) -> None:
    """Its whole history is in the page the server sends, interrupted turns included."""
    with fast_server.client() as client:
        session_id = finished_session(client, "Read me with scripts off")
        stored = client.get(f"/api/sessions/{session_id}").json()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()

    page.goto(f"{fast_server.url}/s/{session_id}")
    finals = page.locator(".turn-final")
    expect(finals).to_have_count(5)
    assert finals.locator(".name").all_text_contents() == list(AGENT_IDS)
    for card, turn in zip(finals.all(), stored["rounds"][0]["turns"], strict=True):
        shown = " ".join(card.locator(".turn-text").inner_text().split())
        assert shown == " ".join(turn["text"].split())
    expect(page.locator(".round-end-text")).to_contain_text("Round complete in")
    expect(page.locator(".sessionbar-title")).to_have_text("Read me with scripts off")
    expect(page.locator("#situation")).to_be_enabled()

    interrupted = seeded.interrupted
    page.goto(f"{seeded.server.url}/s/{interrupted.id}")
    expect(page.locator(".round")).to_have_count(2)
    expect(page.locator(".turn-final")).to_have_count(7)
    card = page.locator(".turn-interrupted")
    expect(card.locator(".name")).to_have_text("Persona")
    expect(card.locator(".tag")).to_have_text("interrupted")
    expect(card.locator(".turn-note")).to_contain_text("The server stopped while Persona")
    expect(card.locator(".turn-text")).to_contain_text("Persona was half way through a thought")
    expect(page.locator(".round-end-text").last).to_have_text(
        "Round interrupted: the server stopped during it."
    )
    expect(page.locator(".situation").first).to_have_text(interrupted.situation)
    context.close()


def test_an_open_page_comes_back_by_itself_after_a_crash(
    browser: Browser,
    page: Page,
    console_errors: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The server is killed mid-turn and started again on the same port and database: the
    page reconnects, shows the turn as interrupted, and the session goes on."""
    where = tmp_path_factory.mktemp("browser-crash")
    before = start_server(where, offline_tps="15")
    port = before.url.rsplit(":", 1)[1]
    try:
        page.goto(before.url)
        send(page, "The lights went out")
        wait_for_live_text(page, "Shadow", 0)
        deadline = time.monotonic() + 30
        while saved_partial(where / "psyche.db") is None:
            assert time.monotonic() < deadline, "no partial text was saved"
            time.sleep(0.05)
    finally:
        kill_server(before)
    after = start_server(where, offline_tps="0", port=port)
    try:
        card = page.locator(".turn-interrupted")
        expect(card).to_have_count(1, timeout=WAIT_MS)
        expect(card.locator(".name")).to_have_text("Shadow")
        expect(page.locator(".turn-live")).to_have_count(0)
        expect(page.locator(".round-end-text")).to_have_text(
            "Round interrupted: the server stopped during it."
        )
        expect(page.locator("#situation")).to_be_enabled()
        send(page, "And now?")
        expect(page.locator(".turn-final.turn-ok")).to_have_count(5, timeout=WAIT_MS)
        expect(page.locator(".round")).to_have_count(2)
        page.goto("about:blank")  # leave before the server stops: no cut stream to report
    finally:
        stop_server(after)
    # The browser notes the stream cut by the crash and each reconnection refused while the
    # server was down; those are expected.
    outage = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED", "htmx:sse:error")
    console_errors[:] = [e for e in console_errors if not any(o in e for o in outage)]


# --- a run of several rounds --------------------------------------------------------------

# Records, in the page, every text the round counter shows and how many rounds the state
# chart holds each time the pictures change: what a person would have seen, however fast the
# rounds go by.
WATCH = """() => {
    window.__seen = {counter: [], charted: [], banner: []};
    const note = () => {
        const round = document.querySelector('#status-round');
        const text = round ? round.textContent : '';
        const seen = window.__seen;
        if (text && seen.counter[seen.counter.length - 1] !== text) seen.counter.push(text);
        const rows = document.querySelectorAll('#picture-state table tbody tr').length;
        if (seen.charted[seen.charted.length - 1] !== rows) seen.charted.push(rows);
        const banner = document.querySelector('#emergency');
        const said = banner ? banner.textContent.trim() : '';
        if (said && seen.banner[seen.banner.length - 1] !== said) seen.banner.push(said);
    };
    new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
        characterData: true});
    note();
}"""


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """200 deltas a second: a round in two or three seconds."""
    server = start_server(tmp_path_factory.mktemp("quick"), offline_tps="200")
    yield server
    stop_server(server)


def test_three_rounds_with_a_stimulus_and_the_pictures(
    quick_server: LiveServer, page: Page, shots: Path
) -> None:
    page.goto(quick_server.url)
    page.evaluate(WATCH)
    page.fill("#run-rounds", "3")
    send(page, "My sister stopped calling me after our father's funeral")
    # While the run goes on, the page offers a stimulus; it opens the next round.
    stimulus = page.locator("#stimulus-text")
    expect(stimulus).to_be_visible(timeout=WAIT_MS)
    page.evaluate(WATCH)  # the conversation was swapped in for the new session: watch it
    stimulus.fill("She texted: we need to talk")
    page.locator("#stimulus button").click()
    # Said at once, then again when the round it opens starts.
    expect(page.locator("#stimulus-note")).to_contain_text(
        re.compile(r"(will open|opened) with"), timeout=WAIT_MS
    )
    # The run's end: three rounds in the state chart, Continue offered.
    expect(page.locator("#picture-state table tbody tr")).to_have_count(3, timeout=WAIT_MS * 2)
    expect(page.locator(".continue")).to_be_visible(timeout=WAIT_MS)
    seen = page.evaluate("() => window.__seen")
    counter = [text for text in seen["counter"] if text.startswith("Round")]
    assert [t for t in ("Round 1 of 3", "Round 2 of 3", "Round 3 of 3") if t in counter] == [
        "Round 1 of 3",
        "Round 2 of 3",
        "Round 3 of 3",
    ], counter
    assert (
        counter.index("Round 1 of 3")
        < counter.index("Round 2 of 3")
        < counter.index("Round 3 of 3")
    )
    # The charts grew a round at a time, after each round.
    grown = [n for n in seen["charted"] if n]
    assert grown == sorted(grown) and grown[-1] == 3 and set(grown) >= {1, 2, 3}, grown
    # This situation stagnates after round 1: the banner said so as it happened.
    assert any("Emergency mode on" in said for said in seen["banner"]), seen["banner"]
    # The stimulus opened one of the rounds after the first, word for word.
    situations = page.locator(".round .situation").all_text_contents()
    assert len(situations) == 3
    assert any(s.startswith("She texted: we need to talk") for s in situations[1:])
    # Each card says whom its agent heard; the network picture has its five nodes.
    expect(page.locator(".turn-heard").first).to_contain_text("heard")
    assert page.locator("#picture-network circle").count() >= 5
    assert page.locator("#picture-sentiment polyline").count() == 5
    page.locator(".pictures-panel > summary").click()  # folded away while the talk goes on
    page.set_viewport_size({"width": 1100, "height": 1500})
    page.locator("#picture-sentiment").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(shots / "screenshot-run.png"))


@pytest.fixture(scope="module")
def status_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """20 deltas a second (a round runs long enough to be seen running); the status page
    updated every 0.3 s."""
    server = start_server(
        tmp_path_factory.mktemp("browser-status"), offline_tps="20", status_interval="0.3"
    )
    yield server
    stop_server(server)


def test_the_status_page_updates_live(status_server: LiveServer, page: Page, shots: Path) -> None:
    page.goto(f"{status_server.url}/status")
    expect(page.locator("h1")).to_have_text("Status")
    expect(page.locator("#status-no-rounds")).to_be_visible()
    expect(page.locator("#status-llm")).to_have_text("loaded", timeout=WAIT_MS)
    # The uptime ticks by itself.
    uptime = page.locator("#status-uptime")
    shown = uptime.get_attribute("data-seconds")
    expect(uptime).not_to_have_attribute("data-seconds", str(shown), timeout=WAIT_MS)

    # A round started elsewhere appears, with its session's title, then leaves once stopped.
    with status_server.client() as client:
        started = client.post(
            "/api/rounds",
            data={"situation": "My neighbour's dog barks all night"},
            headers={"Accept": "application/json"},
        )
        session_id = started.json()["session_id"]
        row = page.locator(f"#running-{session_id}")
        expect(row).to_be_visible(timeout=WAIT_MS)
        expect(row).to_contain_text("My neighbour's dog barks all night")
        expect(page.locator("#status-rounds-running")).to_have_text("1")
        expect(page.locator(".model-health")).to_contain_text("psyche/offline")
        page.screenshot(path=str(shots / "screenshot-status.png"))
        assert client.post(f"/api/sessions/{session_id}/stop").status_code == 200
    expect(row).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#status-no-rounds")).to_be_visible()
    expect(page.locator("#status-rounds-running")).to_have_text("0")
