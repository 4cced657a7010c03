"""A shared link in headless Chromium, in a fresh context with no cookie: the run followed
live, no control anywhere on the page, and the page told when the link is revoked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from psyche_sse.web.sharing import REVOKED
from tests.waiting import wait_for
from tests.web.accounts import Team, team
from tests.web.sse import start_round

pytestmark = pytest.mark.browser

WAIT_MS = 90_000
FETCHED_PICTURES = """least => performance.getEntriesByType("resource").filter(
    (entry) => entry.name.includes("part=pictures") && entry.responseStatus === 200
).length >= least"""


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """40 deltas a second: a run of two rounds lasts long enough to watch it."""
    with team(tmp_path_factory.mktemp("browser-sharing"), offline_tps="40") as t:
        yield t


def test_a_shared_link_follows_the_run_live_with_no_controls(crew: Team, browser: Browser) -> None:
    with crew.token_client("bob") as bob:
        session_id = start_round(bob, "A storm over the shared harbour", rounds=2)["session_id"]
        wait_for(lambda: bob.get(f"/api/sessions/{session_id}").status_code == 200)
        made = bob.post(f"/api/sessions/{session_id}/share")
        assert made.status_code == 201
        url = made.json()["url"]

        context = browser.new_context(viewport={"width": 1100, "height": 760})
        assert context.cookies() == []
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pictures: list[int] = []
        page.on(
            "response",
            lambda r: pictures.append(r.status) if "part=pictures" in r.url else None,
        )
        try:
            opened = page.goto(url)
            assert opened is not None and opened.status == 200
            assert opened.headers["x-robots-tag"].startswith("noindex")
            expect(page.locator('meta[name="robots"]')).to_have_attribute(
                "content", "noindex, nofollow"
            )
            # Opened while the run goes on: the rest arrives live.
            assert page.locator(".turn-final").count() < 10
            expect(page.locator(".turn-final")).to_have_count(10, timeout=WAIT_MS)
            expect(page.locator(".turn-live")).to_have_count(0)
            expect(page.locator(".round")).to_have_count(2)
            # After each round the page fetched its pictures from its own address. Waited
            # for in the page: Playwright hands the test its "response" events only while
            # the test is inside a Playwright call, so a plain loop over `pictures` could
            # miss one that came in after the last such call.
            page.wait_for_function(FETCHED_PICTURES, arg=2, timeout=WAIT_MS)
            assert set(pictures) <= {200}, pictures
            expect(page.locator("#pictures svg").first).to_be_attached()

            controls = ("form", "button", "input", "textarea", "#composer", ".sessionbar-actions")
            for control in controls:
                expect(page.locator(control)).to_have_count(0)
            expect(page.locator('a[href^="/sessions"], a[href^="/s/"]')).to_have_count(0)
            expect(page.locator(".account-name")).to_have_count(0)
            assert errors == [], errors

            # Revoked: the open page is told, and its stream ends (htmx does not reconnect).
            assert bob.delete(f"/api/sessions/{session_id}/share").status_code == 204
            expect(page.locator("#status")).to_contain_text(REVOKED, timeout=WAIT_MS)
            again = page.reload()
            assert again is not None and again.status == 404
            expect(page.locator("h1")).to_have_text("This link does not work")
        finally:
            context.close()
