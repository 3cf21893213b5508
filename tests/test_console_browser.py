"""``recx ui`` in a real browser (Debian chromium via Playwright) against a real broker: the live
view shows a published explanation with its evidence, a blind pairwise rating writes exactly one
feedback event, and an explanation containing ``<script>`` is shown as text, never run."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from recx_worker.config import load_settings
from recx_worker.events import Evidence, ExplanationEvent, SupportingItem

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
XSS = "<script>window.__recx_pwned = 1</script>Great tuner <b>bold</b>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def console_url(kafka_bootstrap, make_topic, worker_data, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run deploy/install-chromium.sh (CI does)")
    import uvicorn

    from recx_worker.console.app import create_app

    data, index = worker_data
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "output_topic": make_topic(1)},
        feedback={"topic": make_topic(1), "store_path": tmp_path / "fb.sqlite3"},
        paths={"data_dir": data, "index_dir": index},
        worker={"plugin_modules": ["console_test_plugins"]},  # terse: a second explainer
    )
    app = create_app(
        settings, explainers=["template", "terse"], group_id=f"console-{tmp_path.name}"
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(timeout=30)


def _publish(bootstrap: str, topic: str, *events: ExplanationEvent) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for e in events:
        producer.send(topic, key=e.user_id.encode(), value=e.model_dump_json().encode())
    producer.flush()
    producer.close()


def _event(eid: str, text: str) -> ExplanationEvent:
    return ExplanationEvent(
        event_id=eid, user_id="U-browser", item_id="I-tuner", text=text, explainer="template",
        explainer_version="1.0.0", grounded=True, latency_ms=3.5, mentioned_features=["display"],
        evidence=Evidence(
            item_features=["display", "tuner"],
            supporting_items=[
                SupportingItem(item_id="I-strap", similarity=0.81, features=["strap"])
            ],
            item_snippet="The display is bright <i>and</i> easy to read.",
        ),
        experiment="ab", arm="control",
    )  # fmt: skip


def test_console_in_chromium(console_url, kafka_bootstrap, tmp_path):
    from playwright.sync_api import sync_playwright

    url, settings = console_url
    _publish(
        kafka_bootstrap, settings.kafka.output_topic,
        _event("e-1", "Recommended because its display is bright."), _event("e-2", XSS),
    )  # fmt: skip
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # Live view: both explanations arrive, with their evidence.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            page.goto(url + "/")
            if page.locator(".explanation").count() >= 2:
                break
            time.sleep(1)
        cards = page.locator(".explanation")
        assert cards.count() == 2
        first = page.locator(".explanation", has_text="display is bright.")
        assert "I-strap" in first.locator(".supporting").inner_text()
        assert first.locator(".feature").all_inner_texts() == ["display", "tuner"]
        assert "bright <i>and</i> easy" in first.locator(".snippet").inner_text()
        assert first.locator(".explainer").inner_text() == "template"
        # The <script> explanation is text on the page, not markup, and never ran.
        xss = page.locator(".explanation .text", has_text="<script>")
        assert xss.inner_text() == XSS
        assert page.evaluate("window.__recx_pwned") is None
        assert page.locator(".explanation .text b").count() == 0 and not dialogs
        page.screenshot(path=str(shots / "live.png"), full_page=True)

        # Explain this: both explainers side by side.
        page.goto(url + "/explain")
        page.locator("a", has_text=" / ").first.click()
        assert page.locator(".answer").count() == 2
        page.screenshot(path=str(shots / "explain.png"), full_page=True)
        # ... or paste an event: a bad one gets the validator's precise reason, shown as text.
        page.fill("textarea[name=event]", '{"event_id": "x", "user_id": "<b>u</b>"}')
        page.click("#explain-pasted")
        assert page.locator("#error").inner_text() == (
            "MissingField: required field 'item_id' is missing"
        )

        # Blind pairwise rating: no explainer names, one click -> exactly one feedback event.
        page.goto(url + "/rate")
        body = page.locator("form").inner_text()
        assert "template" not in body and "terse" not in body
        texts = page.locator("form .text").all_inner_texts()
        assert len(texts) == 2 and texts[0] != texts[1]
        pair_id = page.locator("input[name=pair_id]").input_value()
        page.click("#choose-A")
        assert "Recorded: A preferred" in page.locator("#message").inner_text()
        page.screenshot(path=str(shots / "rate.png"), full_page=True)
        # Re-posting the same pair (a double submit) records nothing.
        again = page.request.post(url + "/rate", form={"pair_id": pair_id, "choice": "B"})
        assert again.status == 409

        # Experiment page: the report of what the store holds, with its plot.
        from recx_worker.devtools.experiment_sim import run_simulation

        run_simulation(settings.feedback.store_path, feedback_events=2000)
        page.goto(url + "/report")
        assert page.locator("table tr").count() == 3  # header + two arms
        assert "is best with probability" in page.inner_text("body")
        page.wait_for_function("document.querySelector('img').naturalWidth > 0")
        page.screenshot(path=str(shots / "report.png"), full_page=True)
        browser.close()

    consumer = KafkaConsumer(
        settings.feedback.topic, bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest", consumer_timeout_ms=5000,
    )  # fmt: skip
    events = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert len(events) == 1
    (fb,) = events
    assert fb["kind"] == "helpful" and fb["source"] == "console-pairwise"
    assert fb["explainer"] in ("template", "terse")
    assert fb["variant"].startswith("preferred-over:")
    assert all(
        (shots / n).stat().st_size > 10_000
        for n in ("live.png", "explain.png", "rate.png", "report.png")
    )
