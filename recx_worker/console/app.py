"""The console's web app: live view, explain-this side by side, blind pairwise rating (one
feedback event per rating), experiment report. Jinja2 autoescapes every value: explanations,
reviews and ids are untrusted text."""

from __future__ import annotations

import contextlib
import random
import secrets
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from kafka import KafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from recx_worker.config import Settings
from recx_worker.console.explaining import Explainers
from recx_worker.console.live import LiveFeed
from recx_worker.events import Evidence, ExplanationFeedback
from recx_worker.validation import Rejection, validate_recommendation

PAIRWISE_SOURCE = "console-pairwise"


@dataclass(slots=True)
class Pair:
    pair_id: str
    user: str
    item: str
    event_id: str
    evidence: Evidence | None
    shown: list[tuple[str, str]]  # (label A/B, text) in the shuffled order
    explainers: dict[str, str] = field(default_factory=dict)  # label -> explainer (hidden)


class Console:
    """State behind the routes: live feed, explainers, feedback producer, pending pairs."""

    def __init__(
        self, settings: Settings, live: LiveFeed, explainers: Explainers | None, producer: Any
    ) -> None:
        self.settings, self.live, self.explainers, self.producer = (
            settings,
            live,
            explainers,
            producer,
        )
        self.pending: dict[str, Pair] = {}
        self._lock = threading.Lock()
        self.templates = Environment(
            loader=PackageLoader("recx_worker.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    # -- routes ----------------------------------------------------------------------------
    def live_view(self, request: Request) -> HTMLResponse:
        return self.page(
            "live.html", title="live", refresh=3, events=self.live.latest(50),
            topic=self.live.topic, group=self.live.group_id, unreadable=self.live.unreadable,
        )  # fmt: skip

    def explain(self, request: Request) -> HTMLResponse:
        """Side by side for a user and item, or for a pasted recommendation event."""
        q = request.query_params
        user, item, history, pasted = (
            q.get("user"), q.get("item"), q.get("history", ""), q.get("event", "")
        )  # fmt: skip
        context: dict[str, Any] = {"title": "explain", "user": user, "item": item}
        context |= {"history": history, "pasted": pasted, "result": None, "error": None}
        if self.explainers is None:
            context["error"] = "no explainers configured (recx ui --explainers ...)"
            return self.page("explain.html", **context)
        context["samples"] = self.explainers.sample_pairs(5)
        if pasted.strip():
            event = validate_recommendation(
                pasted, max_bytes=self.settings.validation.max_message_bytes,
                max_history=self.settings.validation.max_history,
            )  # fmt: skip
            if isinstance(event, Rejection):
                context["error"] = f"{event.error_class}: {event.reason}"
            else:
                context["result"] = self.explainers.side_by_side(
                    event.user_id, event.item_id, [h.item_id for h in event.history],
                    event_id=event.event_id,
                )  # fmt: skip
        elif user and item:
            items = [h.strip() for h in history.split(",") if h.strip()]
            context["result"] = self.explainers.side_by_side(user, item, items)
        return self.page("explain.html", **context)

    def rate_form(self, request: Request, message: str | None = None) -> HTMLResponse:
        if self.explainers is None or len(self.explainers.names) < 2:
            return self.page("rate.html", title="rate", error="needs two explainers (--explainers)")
        pair = self._new_pair()
        if pair is None:
            return self.page("rate.html", title="rate", error="no request both explainers answer")
        return self.page("rate.html", title="rate", pair=pair, message=message)

    async def rate_submit(self, request: Request) -> HTMLResponse:
        form = await request.form()
        pair_id, choice = str(form.get("pair_id", "")), str(form.get("choice", ""))
        with self._lock:
            pair = self.pending.pop(pair_id, None)
        if pair is None or choice not in pair.explainers:
            return self.page(
                "rate.html", status=409, title="rate",
                error="this pair was already rated or does not exist; nothing was recorded",
            )  # fmt: skip
        (other,) = [e for label, e in pair.explainers.items() if label != choice]
        chosen = pair.explainers[choice]
        feedback = ExplanationFeedback(
            feedback_id=str(uuid.uuid4()),
            explanation_id=f"{pair.event_id}:{chosen}",
            user_id=pair.user,
            item_id=pair.item,
            explainer=chosen,
            variant=f"preferred-over:{other}",
            kind="helpful",
            reason=f"blind pairwise preference over {other}",
            source=PAIRWISE_SOURCE,
        )
        future = self.producer.send(
            self.settings.feedback.topic,
            key=pair.user.encode(),
            value=feedback.model_dump_json().encode(),
        )
        future.get(timeout=30)  # acknowledged before we say "recorded"
        return self.rate_form(request, message=f"Recorded: {choice} preferred.")

    def report(self, request: Request) -> HTMLResponse:
        from recx_worker.feedback.report import load_report

        path = self.settings.feedback.store_path
        if not path.exists():
            return self.page(
                "report.html", title="experiment", error=f"no feedback store at {path}"
            )
        try:
            rep = load_report(path)
        except ValueError as exc:
            return self.page("report.html", title="experiment", error=str(exc))
        return self.page(
            "report.html", title="experiment", report=rep, pct=round(rep.confidence * 100)
        )

    def report_png(self, request: Request) -> Response:
        from recx_worker.feedback.report import load_report, plot

        out = Path(tempfile.mkdtemp(prefix="recx-console-")) / "report.png"
        try:
            plot(load_report(self.settings.feedback.store_path), out)
        except (ValueError, FileNotFoundError) as exc:
            return Response(str(exc), status_code=404)
        return FileResponse(out, media_type="image/png")

    def _new_pair(self) -> Pair | None:
        assert self.explainers is not None
        rng = random.Random()
        names = rng.sample(self.explainers.names, 2)
        candidates = self.explainers.sample_pairs(50)
        for user, item in rng.sample(candidates, k=min(10, len(candidates))):
            result = self.explainers.side_by_side(user, item)
            answers = {a.explainer: a.text for a in result.answers if a.explainer in names}
            if result.error or any(answers.get(n) is None for n in names):
                continue
            if answers[names[0]] == answers[names[1]]:
                continue  # identical texts carry no preference
            rng.shuffle(names)
            pair_id = secrets.token_urlsafe(12)
            pair = Pair(
                pair_id, user, item, result.event.event_id, result.evidence,
                shown=[("A", answers[names[0]]), ("B", answers[names[1]])],
                explainers={"A": names[0], "B": names[1]},
            )  # fmt: skip
            with self._lock:
                self.pending[pair_id] = pair
            return pair
        return None


def create_app(
    settings: Settings, *, explainers: list[str] | None = None, group_id: str = "recx-console"
) -> Starlette:
    """The console app; starts its live consumer on startup and stops everything on shutdown."""
    live = LiveFeed(settings.kafka.client_config(), settings.kafka.output_topic, group_id)
    runners = Explainers.open(settings, explainers) if explainers else None
    producer = KafkaProducer(**settings.kafka.client_config(), acks="all", enable_idempotence=True)
    console = Console(settings, live, runners, producer)

    def shutdown() -> None:
        live.stop()
        producer.close(timeout=10)
        if runners is not None:
            runners.close()

    routes = [
        Route("/", console.live_view),
        Route("/explain", console.explain),
        Route("/rate", console.rate_form, methods=["GET"]),
        Route("/rate", console.rate_submit, methods=["POST"]),
        Route("/report", console.report),
        Route("/report.png", console.report_png),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        live.start()
        try:
            yield
        finally:
            shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    return app
