"""The page's routes: the form with and without htmx, the HTML stream, errors; in process
where the responses end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import inprocess
from tests.live import LiveServer
from tests.web.sse import follow_round, run_round, start_round, the_round

HTMX = {"HX-Request": "true"}


def test_the_page_runs_only_vendored_scripts(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        page = client.get("/")
        scripts = re.findall(r"<script\b[^>]*>", page.text)
        assert scripts
        for tag in scripts:
            src = re.search(r'src="([^"?]+)', tag)
            assert src, f"inline script: {tag}"
            assert src.group(1).startswith("/static/vendor/")
            js = client.get(src.group(1))
            assert js.status_code == 200
            assert "javascript" in js.headers["content-type"]
        assert not re.search(r"\son[a-z]+=", page.text), "no inline event handlers"
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'role="log"' in page.text
    assert "Offline demo model" in page.text
    assert "htmx-4.0.1.min.js" in page.text


def test_the_htmx_form_starts_a_session_and_follows_it(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        response = client.post("/rounds", data={"situation": "Hello"}, headers=HTMX)
        assert response.status_code == 200
        url = response.headers["hx-push-url"]
        session_id = url.removeprefix("/s/")
        assert f'hx-sse:connect="/s/{session_id}/stream?after=0"' in response.text
        assert 'hx-target="#conversation" hx-swap="outerHTML"' in response.text
        follow_round(client, f"/api/sessions/{session_id}/events")
        page = client.get(url)
    assert page.status_code == 200
    assert page.text.count('class="turn turn-final turn-ok"') == 5
    assert 'class="turn turn-live"' not in page.text
    last = re.search(r'hx-sse:connect="/s/\w+/stream\?after=(\d+)"', page.text)
    assert last
    assert int(last.group(1)) > 0
    assert "<fieldset>" in page.text  # the round is over: the form is on


def test_bad_input_is_shown_in_the_page(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        htmx = client.post("/rounds", data={"situation": "  "}, headers=HTMX)
        plain = client.post("/rounds", data={"situation": "x" * 5000})
    assert htmx.status_code == 400
    assert htmx.text.startswith('<hx-partial hx-target="#composer-error"')
    assert "describe a situation: the text is empty" in htmx.text
    assert plain.status_code == 400
    assert "the situation is too long" in plain.text
    assert 'role="alert"' in plain.text
    assert 'value="' + "x" * 5000 + '"' in plain.text  # what was typed is kept


def test_without_javascript_the_form_redirects_to_the_session(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        response = client.post("/rounds", data={"situation": "No JS here"})
        assert response.status_code == 303
        url = response.headers["location"]
        assert url.startswith("/s/")
        stop = client.post(url + "/stop")
    assert stop.status_code == 303


def test_the_html_stream_carries_fragments_with_ids(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        body = start_round(client, "Fragments <b>please</b>")
        follow_round(client, body["events_url"])
        url = f"/s/{body['session_id']}/stream"
        with client.stream("GET", url) as response:
            assert response.headers["cache-control"] == "no-cache, no-transform"
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if "round-end-text" in text:
                    break
    messages = [m for m in text.split("\n\n") if m.startswith("id: ")]
    assert len(messages) >= 1 + 5 * 3 + 1
    assert all("\nevent:" not in m for m in messages), "unnamed messages: htmx swaps them"
    assert "Fragments &lt;b&gt;please&lt;/b&gt;" in text
    assert text.count("<hx-partial") == text.count("</hx-partial>")


def test_the_stream_of_an_unknown_session_says_so_and_ends(fast_server: LiveServer) -> None:
    with fast_server.client() as client:
        response = client.get("/s/nope/stream")
    assert response.status_code == 200
    assert "there is no session with this id" in response.text
    assert response.text.rstrip().endswith("event: end\ndata:")


def test_a_provider_failure_is_shown_in_its_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Persona's provider refuses every connection (port 9 on loopback: nothing listens), so
    # its call fails every time, while the others answer on the offline model.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    config = inprocess.settings(
        tmp_path,
        model_persona="openai/gpt-4o-mini",
        api_base="http://127.0.0.1:9/v1",
        retry_attempts=1,
    )
    with inprocess.running(config) as app, app.client() as client:
        msgs = run_round(client, "The mask slips")
        page = client.get(f"/s/{msgs[0].data['session_id']}")
    completes = {m.data["agent_id"]: m.data for m in msgs if m.type == "agent_processing_complete"}
    assert len(completes) == 5, "the round goes on after the failure"
    persona = completes["Persona"]
    assert persona["metadata"]["status"] == "error"
    assert persona["metadata"]["error_class"]
    assert persona["final_content"] == "[Persona is experiencing technical difficulties]"
    assert the_round(msgs)[-1].data["status"] == "error"
    assert "Persona could not answer:" in page.text
    assert "turn-final turn-error" in page.text
    assert "Traceback" not in page.text


def test_a_session_from_before_a_restart_is_shown_and_goes_on(tmp_path: Path) -> None:
    config = inprocess.settings(tmp_path)
    with inprocess.running(config) as app, app.client() as client:
        before = run_round(client, "Before the restart")
    session_id = before[0].data["session_id"]
    with inprocess.running(config) as app, app.client() as client:
        page = client.get(f"/s/{session_id}")
        assert page.status_code == 200
        assert page.text.count("turn-final turn-ok") == 5
        assert "Before the restart" in page.text
        # The store numbers on from a reserved high-water mark: maybe a gap, never a repeat.
        resume = re.search(r"stream\?after=(\d+)", page.text)
        assert resume
        assert int(resume.group(1)) >= before[-1].id
        after = run_round(client, "After it", session_id=session_id)
    assert after[0].id > before[-1].id
    assert the_round(after)[1].data["metadata"]["has_memory"] is True
