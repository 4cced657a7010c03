"""The sessions pages: the list, renaming and deleting with a confirmation, the session bar,
and a stored history rendered on the server. In process, but for a round left running."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import inprocess
from tests.inprocess import InProcess
from tests.live import LiveServer
from tests.web.conftest import SEEDED_COUNT, SeededServer
from tests.web.sse import finished_session, start_round

HTMX = {"HX-Request": "true"}


def a_session(server: LiveServer | InProcess, situation: str) -> str:
    with server.client() as client:
        return finished_session(client, situation)


def items(html: str) -> list[str]:
    return re.findall(r'<a class="session-title" href="/s/(\w+)">', html)


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_the_newest_activity_first(seeded_app: SeededServer) -> None:
    with seeded_app.server.client() as client:
        page = client.get("/sessions")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    newest_first = [s.id for s in reversed(seeded_app.sessions)]
    assert items(page.text) == newest_first[:20]
    newest = seeded_app.interrupted
    # The title is the first situation, escaped; when, how many rounds, last activity.
    assert "Situation 44 &lt;b&gt;bold&lt;/b&gt; &amp; more</a>" in page.text
    assert "<b>bold</b>" not in page.text
    assert '<span class="tag tag-interrupted">interrupted</span>' in page.text
    assert "<span>2 rounds</span>" in page.text and "<span>1 round</span>" in page.text
    assert f'<time datetime="{newest.updated}">5 Jan 2026, 09:44 UTC</time>' in page.text
    assert f'href="/s/{newest.id}/rename?next=/sessions"' in page.text
    assert f'href="/s/{newest.id}/delete"' in page.text
    assert f"Page 1 of 3 · {SEEDED_COUNT} sessions" in page.text
    assert 'href="/sessions?page=2" rel="next"' in page.text
    assert 'rel="prev"' not in page.text


def test_the_list_in_pages(seeded_app: SeededServer) -> None:
    with seeded_app.server.client() as client:
        second = client.get("/sessions?page=2")
        last = client.get("/sessions?page=3")
        past = client.get("/sessions?page=9")
    newest_first = [s.id for s in reversed(seeded_app.sessions)]
    assert items(second.text) == newest_first[20:40]
    assert 'href="/sessions?page=1" rel="prev"' in second.text
    assert "rename?next=/sessions%3Fpage%3D2" in second.text
    assert items(last.text) == newest_first[40:]
    assert 'rel="next"' not in last.text
    assert past.status_code == 200
    assert items(past.text) == []
    assert 'There are no sessions on this page. <a href="/sessions?page=3">' in past.text


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=two", "page=50001"])
def test_a_bad_page_number_is_a_400_page(seeded_app: SeededServer, query: str) -> None:
    with seeded_app.server.client() as client:
        response = client.get(f"/sessions?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "page must be" in response.text
    assert "Traceback" not in response.text


def test_an_empty_list_says_how_to_start(tmp_path: Path) -> None:
    with inprocess.running(inprocess.settings(tmp_path)) as app, app.client() as client:
        page = client.get("/sessions")
    assert "No sessions yet." in page.text
    assert 'class="pager"' not in page.text


def test_every_page_links_to_the_list(app: InProcess) -> None:
    with app.client() as client:
        for url in ("/", "/sessions", "/s/nope"):
            page = client.get(url)
            assert '<a class="topbar-link" href="/sessions">Sessions</a>' in page.text
            assert '<a class="topbar-link" href="/">New session</a>' in page.text


# --- the session page ----------------------------------------------------------------------


def test_the_session_page_has_its_title_exports_rename_and_delete(app: InProcess) -> None:
    session_id = a_session(app, "A <b>bold</b> boss")
    with app.client() as client:
        page = client.get(f"/s/{session_id}")
    assert "<title>A &lt;b&gt;bold&lt;/b&gt; boss · Psyche council</title>" in page.text
    assert '<h1 class="sessionbar-title">A &lt;b&gt;bold&lt;/b&gt; boss</h1>' in page.text
    for fmt in ("json", "md", "html"):
        assert f'<a href="/api/sessions/{session_id}/export.{fmt}" download>' in page.text
    assert f'href="/s/{session_id}/rename?next=/s/{session_id}"' in page.text
    assert f'href="/s/{session_id}/delete"' in page.text


def test_a_new_session_from_the_htmx_form_gets_its_session_bar(app: InProcess) -> None:
    with app.client() as client:
        response = client.post("/rounds", data={"situation": "Bar <i>me</i>"}, headers=HTMX)
    assert '<hx-partial hx-target="#sessionbar" hx-swap="outerHTML">' in response.text
    assert '<h1 class="sessionbar-title">Bar &lt;i&gt;me&lt;/i&gt;</h1>' in response.text


def test_the_home_page_has_no_session_bar(app: InProcess) -> None:
    with app.client() as client:
        page = client.get("/")
    assert '<nav id="sessionbar" class="sessionbar" aria-label="This session" hidden>' in page.text


def test_a_stored_interrupted_round_is_rendered_as_such(seeded_app: SeededServer) -> None:
    with seeded_app.server.client() as client:
        page = client.get(f"/s/{seeded_app.interrupted.id}")
    assert page.status_code == 200
    assert page.text.count('<section id="round-') == 2
    assert page.text.count("turn-final turn-ok") == 6
    assert page.text.count("turn-final turn-interrupted") == 1
    assert "The server stopped while Persona was answering" in page.text
    assert "Persona was half way through a thought about Situation 44" in page.text
    assert "Round interrupted: the server stopped during it." in page.text
    assert "turn-live" not in page.text
    assert "<fieldset>" in page.text


def test_an_unknown_session_is_a_clear_404_page(app: InProcess) -> None:
    with app.client() as client:
        for url in ("/s/nope", "/s/nope/rename", "/s/nope/delete"):
            page = client.get(url)
            assert page.status_code == 404
            assert "<h1>Not found</h1>" in page.text
            assert "there is no session with this id" in page.text
            assert 'href="/sessions">Your sessions</a>' in page.text


# --- rename ----------------------------------------------------------------------------


def test_rename_with_the_form(app: InProcess) -> None:
    session_id = a_session(app, "Old <name>")
    back = f"/s/{session_id}"
    with app.client() as client:
        form = client.get(f"/s/{session_id}/rename", params={"next": back})
        response = client.post(
            f"/s/{session_id}/rename", data={"title": " New <b>name</b> ", "next": back}
        )
        page = client.get(back)
    assert 'value="Old &lt;name&gt;"' in form.text
    assert f'<input type="hidden" name="next" value="{back}">' in form.text
    assert f'action="/s/{session_id}/rename" method="post"' in form.text
    assert 'maxlength="200"' in form.text
    assert response.status_code == 303
    assert response.headers["location"] == back
    assert '<h1 class="sessionbar-title">New &lt;b&gt;name&lt;/b&gt;</h1>' in page.text


@pytest.mark.parametrize(
    ("title", "needle"), [("", "cannot be empty"), ("x" * 201, "too long"), ("  ", "empty")]
)
def test_a_bad_title_shows_the_form_again(app: InProcess, title: str, needle: str) -> None:
    session_id = a_session(app, "Keep me")
    with app.client() as client:
        response = client.post(f"/s/{session_id}/rename", data={"title": title})
        after = client.get(f"/api/sessions/{session_id}").json()["title"]
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert re.search(rf'role="alert">[^<]*{needle}', response.text)
    assert f'value="{title}"' in response.text  # what was typed is kept
    assert after == "Keep me"


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example", "/sessions?page=1&x=<y>", "/s/other"]
)
def test_rename_only_goes_back_to_our_own_pages(app: InProcess, next_url: str) -> None:
    session_id = a_session(app, "Where next")
    with app.client() as client:
        form = client.get(f"/s/{session_id}/rename", params={"next": next_url})
        response = client.post(f"/s/{session_id}/rename", data={"title": "x", "next": next_url})
    assert '<input type="hidden" name="next" value="/sessions">' in form.text
    assert response.headers["location"] == "/sessions"


# --- delete ----------------------------------------------------------------------------


def test_delete_asks_first_then_deletes(app: InProcess) -> None:
    session_id = a_session(app, "Delete <me>")
    with app.client() as client:
        confirm = client.get(f"/s/{session_id}/delete")
        unconfirmed = client.post(f"/s/{session_id}/delete")
        still = client.get(f"/s/{session_id}")
        done = client.post(f"/s/{session_id}/delete", data={"confirm": "yes"})
        listed = client.get(done.headers["location"])
        gone = client.get(f"/s/{session_id}")
    assert confirm.status_code == 200
    assert "<h1>Delete this session?</h1>" in confirm.text
    assert "<strong>Delete &lt;me&gt;</strong>" in confirm.text
    assert f'<form action="/s/{session_id}/delete" method="post">' in confirm.text
    assert '<input type="hidden" name="confirm" value="yes">' in confirm.text
    assert f'href="/api/sessions/{session_id}/export.json"' in confirm.text
    assert "A round is running" not in confirm.text
    # A post that did not come from the confirmation only shows it.
    assert unconfirmed.status_code == 303
    assert unconfirmed.headers["location"] == f"/s/{session_id}/delete"
    assert still.status_code == 200
    assert done.status_code == 303
    assert done.headers["location"] == "/sessions?deleted=1"
    assert '<p class="notice" role="status">The session was deleted.</p>' in listed.text
    assert session_id not in items(listed.text)
    assert gone.status_code == 404


def test_the_confirmation_says_a_running_round_is_stopped_first(paced_server: LiveServer) -> None:
    with paced_server.client() as client:
        body = start_round(client, "Still talking")
        confirm = client.get(f"/s/{body['session_id']}/delete")
        client.post(f"/api/sessions/{body['session_id']}/stop")
    assert "A round is running in this session: it is stopped first." in confirm.text


def test_cross_site_forms_are_refused(app: InProcess) -> None:
    session_id = a_session(app, "Mine")
    evil = {"Origin": "http://evil.example"}
    with app.client() as client:
        rename = client.post(f"/s/{session_id}/rename", data={"title": "x"}, headers=evil)
        delete = client.post(f"/s/{session_id}/delete", data={"confirm": "yes"}, headers=evil)
        same_site = client.post(
            f"/s/{session_id}/rename",
            data={"title": "Still mine"},
            headers={"Origin": app.url},
        )
        title = client.get(f"/api/sessions/{session_id}").json()["title"]
    assert rename.status_code == 403 and delete.status_code == 403
    assert same_site.status_code == 303
    assert title == "Still mine"
