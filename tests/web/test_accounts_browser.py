"""Signing in and out in headless Chromium: the login page, a round streamed to a signed-in
page, and signing out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.accounts import PASSWORDS, Team, team

pytestmark = pytest.mark.browser

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def crew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team(tmp_path_factory.mktemp("browser-accounts"), offline_tps="200") as t:
        yield t


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors


def test_sign_in_follow_a_round_and_sign_out(crew: Team, page: Page) -> None:
    page.goto(f"{crew.server.url}/sessions")
    expect(page).to_have_url(f"{crew.server.url}/login?next=/sessions")
    page.fill("#name", "bob")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong name or password.")
    expect(page.locator("#name")).to_have_value("bob")

    page.fill("#password", PASSWORDS["bob"])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{crew.server.url}/sessions")
    expect(page.locator(".account-name")).to_have_text("bob")
    cookie = next(c for c in page.context.cookies() if c["name"] == "psyche_login")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("() => document.cookie") == ""  # no script can read it

    # A round, streamed to the signed-in page (its event stream sends the cookie too).
    page.goto(crew.server.url)
    page.fill("#situation", "My neighbour keeps borrowing my tools")
    page.press("#situation", "Enter")
    expect(page.locator(".turn-final")).to_have_count(5, timeout=WAIT_MS)
    expect(page.locator(".round-end-text")).to_contain_text("Round complete in")

    page.click("button.account-out:text-is('Sign out')")
    expect(page).to_have_url(f"{crew.server.url}/login")
    expect(page.locator(".account-name")).to_have_count(0)
    page.goto(f"{crew.server.url}/sessions")
    expect(page).to_have_url(f"{crew.server.url}/login?next=/sessions")
