"""``recx eval``: explainers (and external outputs) over a split -> metrics, tables, plots."""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from recx_worker.checksums import sha256_file
from recx_worker.config import ChainSettings
from recx_worker.explainer import ExplainFailure, ExplainRequest, Explanation
from recx_worker.prepared import ExplanationRecord, PreparedData
from training.evaluation import plots
from training.evaluation.baselines import MostFrequentExplanation
from training.evaluation.report import markdown_tables, samples_markdown, write_json
from training.evaluation.runner import (
    FALLBACK,
    NO_ANSWER,
    RawRun,
    deliver,
    record_event,
    run_explainer,
    write_outputs,
)
from training.evaluation.scoring import Outputs, ScoringContext, score_outputs
from training.evaluation.significance import DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap
from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

if TYPE_CHECKING:
    from recx_worker.config import Settings

log = structlog.get_logger(__name__)


class EvalInputError(ValueError):
    """Bad user input to ``recx eval`` (reported as a message, never as a traceback)."""


@dataclass(slots=True)
class EvalConfig:
    data_dir: Path
    split: str
    explainers: list[str]
    out: Path
    limit: int | None = None
    batch_size: int = 16
    externals: list[str] = field(default_factory=list)
    baselines: bool = True
    index_dir: Path | None = None
    samples: int = 20
    progress: bool = True
    command: str = ""
    config: Path | None = None
    compare: list[str] = field(default_factory=list)  # "A:B": paired bootstrap of A - B (raw)
    bootstrap: int = DEFAULT_RESAMPLES
    bootstrap_seed: int = DEFAULT_SEED


def parse_external(spec: str) -> tuple[str, Path]:
    """``NAME=FILE`` -> (NAME, FILE); a bare ``FILE`` is named ``ext:<file stem>``."""
    name, sep, path = spec.partition("=")
    if sep and name.strip() and path.strip():
        return name.strip(), Path(path.strip())
    return f"ext:{Path(spec).stem}", Path(spec)


def parse_compare(spec: str, systems: list[str]) -> tuple[str, str]:
    """``A:B`` -> (A, B), both among ``systems`` (names may hold ':' themselves, as ``ext:x``)."""
    splits = [
        (spec[:i], spec[i + 1 :])
        for i, ch in enumerate(spec)
        if ch == ":" and spec[:i] in systems and spec[i + 1 :] in systems
    ]
    if len(splits) != 1:
        why = "is ambiguous" if splits else "does not name two scored systems as A:B"
        raise EvalInputError(f"--compare {spec}: {why}; systems: {', '.join(systems)}")
    a, b = splits[0]
    if a == b:
        raise EvalInputError(f"--compare {spec}: compares a system with itself")
    return a, b


def _planned_systems(cfg: EvalConfig) -> list[str]:
    """Names of the systems whose raw outputs ``cfg`` will score (if they can be run); an
    ``--external`` whose name is already taken fails here, before any work."""
    names = list(dict.fromkeys([FALLBACK, *cfg.explainers]))
    if cfg.baselines:
        names.append(MostFrequentExplanation.name)
    for spec in cfg.externals:
        name = parse_external(spec)[0]
        if name in names:
            why = " (the fallback explainer always runs)" if name == FALLBACK else ""
            raise EvalInputError(f"--external {spec}: a system named {name!r} is scored{why}")
        names.append(name)
    return names


def compare_systems(
    pairs: list[tuple[str, str]],
    records: list[ExplanationRecord],
    raw_texts: dict[str, list[str]],
    resamples: int,
    seed: int,
    ctx: ScoringContext | None = None,
) -> list[dict]:
    """Paired bootstrap of A - B on the raw outputs, headline protocol (15-word references);
    with ``ctx``, the per-record metrics beyond n-grams (``ScoringContext.per_record``) too."""
    refs = [tokenize(r.explanation)[:PETER_REFERENCE_WORDS] for r in records]
    tokens: dict[str, list[list[str]]] = {}
    extra: dict[str, dict[str, list[float]]] = {}
    out = []
    for a, b in pairs:
        if a not in raw_texts or b not in raw_texts:
            log.warning("comparison_skipped", a=a, b=b, reason="system not evaluated")
            continue
        for name in (a, b):
            if name not in tokens:
                tokens[name] = [tokenize(t) for t in raw_texts[name]]
                extra[name] = ctx.per_record(raw_texts[name]) if ctx is not None else {}
        per_record = {k: (extra[a][k], extra[b][k]) for k in extra[a]}
        start = time.perf_counter()
        result = paired_bootstrap(
            refs, tokens[a], tokens[b], n_resamples=resamples, seed=seed, per_record=per_record
        )
        seconds = time.perf_counter() - start
        log.info("paired_bootstrap", a=a, b=b, resamples=resamples, seconds=round(seconds, 3))
        out.append({"a": a, "b": b, "mode": "raw", **result, "seconds": seconds})
    return out


def read_external(
    path: Path, records: list[ExplanationRecord], name: str | None = None
) -> tuple[RawRun, int]:
    """Another system's outputs as a run: JSONL lines ``{"id" (or "record_id"), "text"}``;
    a line with ``"error"`` is a failure (as written by ``recx eval`` into ``outputs/``).

    Returns the run and the number of records the file has no line for (scored as failures).
    """
    if not path.is_file():
        raise EvalInputError(f"external file not found: {path}")
    found: dict[str, Any] = {}
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{n}: not JSON ({exc.msg})") from None
            key = row.get("id", row.get("record_id")) if isinstance(row, dict) else None
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(key, str) or not isinstance(text, str):
                raise EvalInputError(
                    f"{path}:{n}: expected an object with string 'id' (or 'record_id') and 'text'"
                )
            error = row.get("error")
            if error:
                error_class, _, message = str(error).partition(": ")
                found[key] = ExplainFailure(error_class, message or error_class)
            else:
                found[key] = Explanation(text=text)
    outcomes: list[Any] = []
    missing = 0
    for record in records:
        if record.record_id in found:
            outcomes.append(found[record.record_id])
        else:
            missing += 1
            outcomes.append(ExplainFailure("Missing", "no text in the external file"))
    if missing == len(records):
        raise EvalInputError(f"{path}: no line matches a record_id of the evaluated split")
    run_name = name or f"ext:{path.stem}"
    return RawRun(run_name, f"external:{path}", outcomes, 0.0), missing


def build_requests(
    records: list[ExplanationRecord], store: Any, chain: ChainSettings
) -> tuple[list[ExplanationRecord], list[ExplainRequest], int]:
    """The explain request of each record whose item is known (its own review never
    evidence), those records, and how many were skipped as unknown (the explain core's
    enrich step, as the worker runs it)."""
    from recx_worker.core import prepare

    kept_records, requests = [], []
    for record, req in zip(
        records, prepare([record_event(r) for r in records], store, chain), strict=True
    ):
        if isinstance(req, ExplainRequest):
            kept_records.append(record)
            requests.append(req)
    return kept_records, requests, len(records) - len(kept_records)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware_text() -> str:
    from recx_worker.lm.device import hardware

    hw = hardware()
    text = f"{_cpu_model()}, {hw['cpu_count']} CPUs"
    return text + (f", GPU {hw['gpu']}" if "gpu" in hw else "")


def _score_delivered(ctx: ScoringContext, delivered, *, first_stage: str) -> dict:
    """Metrics of what users would see: ``delivered`` outputs after guard and fallback."""
    return score_outputs(
        ctx,
        Outputs(
            delivered.texts,
            stages=delivered.stages,
            failures=delivered.stages.count(NO_ANSWER),
            fallbacks=sum(stage != first_stage for stage in delivered.stages),
        ),
    )


def run_explainers(
    names: Sequence[str],
    settings: Settings,
    store: Any,
    requests: Sequence[ExplainRequest],
    *,
    batch_size: int,
    progress: bool,
    outputs: Path | None,
) -> tuple[dict[str, RawRun], dict[str, str]]:
    """Create each named explainer as configured and run it over ``requests``: the runs, and
    why each explainer that could not start is unavailable (an unknown name is an error).
    With ``outputs``, each run's outcomes go to ``outputs/NAME.jsonl`` as they come."""
    from recx_worker.explainer import ExplainerContext
    from recx_worker.plugins import UnknownExplainerError, create_explainer

    runs: dict[str, RawRun] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            options = settings.chain.options.get(name, {})
            context = ExplainerContext.from_settings(settings, store)
            explainer = create_explainer(name, context, **options)
            explainer.warm_up()
        except UnknownExplainerError as exc:
            raise EvalInputError(str(exc)) from None
        except Exception as exc:
            unavailable[name] = f"{type(exc).__name__}: {exc}"
            log.warning("explainer_unavailable", explainer=name, reason=unavailable[name])
            continue
        try:
            sink = outputs / f"{name}.jsonl" if outputs is not None else None
            runs[name] = run_explainer(explainer, requests, batch_size, progress, sink)
        finally:
            explainer.close()
    return runs, unavailable


def _complete_outputs(
    folder: Path,
    runs: dict[str, RawRun],
    requests: Sequence[ExplainRequest],
    *,
    written: set[str],
    sources: set[Path],
) -> None:
    """Make ``folder`` hold exactly the outputs of the systems scored now: write those not
    written while running (baselines, externals) and remove files an earlier report left, so
    that rescoring the folder reproduces every number of this report (an external's own file
    in ``sources`` is never removed)."""
    for name, run in runs.items():
        if name not in written:
            write_outputs(folder / f"{name}.jsonl", run, requests)
    for stale in folder.glob("*.jsonl"):
        if stale.stem not in runs and stale.resolve() not in sources:
            log.info("stale_output_removed", path=str(stale))
            stale.unlink()


def run_eval(cfg: EvalConfig) -> dict:
    """Run everything ``cfg`` asks for and write the report into ``cfg.out``."""
    from recx_worker.config import load_settings
    from recx_worker.guard import Guard
    from recx_worker.retrieval.evidence import EvidenceStore

    planned = _planned_systems(cfg)
    pairs = [parse_compare(spec, planned) for spec in cfg.compare]  # fail before any work
    for spec in cfg.externals:
        if not parse_external(spec)[1].is_file():
            raise EvalInputError(f"--external {spec}: file not found")
    if pairs and cfg.bootstrap < 1:
        raise EvalInputError("--bootstrap must be at least 1")
    try:
        data = PreparedData(cfg.data_dir)
        records = data.split(cfg.split)
    except (FileNotFoundError, ValueError) as exc:
        raise EvalInputError(str(exc)) from None
    if cfg.limit is not None:
        records = records[: cfg.limit]
    if not records:
        raise EvalInputError(f"the {cfg.split} split of {cfg.data_dir} has no record")
    settings = load_settings(cfg.config)
    settings.paths.data_dir = cfg.data_dir
    if cfg.index_dir is not None:
        settings.paths.index_dir = cfg.index_dir
    store = EvidenceStore.open(cfg.data_dir, cfg.index_dir)
    records, requests, unknown = build_requests(records, store, settings.chain)
    if not requests:
        raise EvalInputError("no record of the split could be enriched (unknown items)")
    guard = Guard.for_store(store, settings)

    notes: dict[str, dict] = {}
    names = list(dict.fromkeys([FALLBACK, *cfg.explainers]))
    runs, unavailable = run_explainers(
        names, settings, store, requests,
        batch_size=cfg.batch_size, progress=cfg.progress, outputs=cfg.out / "outputs",
    )  # fmt: skip
    if FALLBACK not in runs:
        raise EvalInputError(
            f"the {FALLBACK} explainer (the fallback) is unavailable: {unavailable}"
        )
    if cfg.baselines:
        baseline = MostFrequentExplanation(data.split("train"))
        runs[baseline.name] = run_explainer(baseline, requests, cfg.batch_size, progress=False)
    for spec in cfg.externals:
        name, path = parse_external(spec)
        run, missing = read_external(path, records, name)
        runs[name] = run
        notes[name] = {"missing_texts": missing, "source": str(path)}
    sources = {parse_external(spec)[1].resolve() for spec in cfg.externals}
    _complete_outputs(cfg.out / "outputs", runs, requests, written=set(names), sources=sources)

    ctx = ScoringContext.build(data, records, [r.evidence.allowed_features() for r in requests])
    results: dict[str, dict[str, dict]] = {}
    texts: dict[str, dict[str, list[str]]] = {}
    stages: dict[str, list[str]] = {}
    # Chain order first (lora, prompt, template), then the rest as they were added.
    order = [n for n in settings.chain.explainers if n in runs]
    order += [n for n in runs if n not in order]
    for name in order:
        run = runs[name]
        delivered = deliver([run, runs[FALLBACK]], requests, guard)
        raw = score_outputs(
            ctx,
            Outputs(
                run.texts, failures=run.failures, guard_rejections=delivered.first_stage_rejections
            ),
        )
        raw["rejection_reasons"] = delivered.first_stage_reasons
        raw["seconds"] = run.seconds
        raw["per_second"] = len(requests) / run.seconds if run.seconds > 0 else None
        got = _score_delivered(ctx, delivered, first_stage=name)
        results[name] = {"raw": raw | notes.get(name, {}), "delivered": got}
        texts[name] = {"raw": run.texts, "delivered": delivered.texts}
        stages[name] = delivered.stages
    chain = settings.chain.explainers
    if len(chain) > 2 and all(n in runs for n in chain):
        # The configured production chain (lora -> prompt -> template by default).
        label = "chain:" + ">".join(chain)
        delivered = deliver([runs[n] for n in chain], requests, guard)
        results[label] = {"delivered": _score_delivered(ctx, delivered, first_stage=chain[0])}
        texts[label] = {"delivered": delivered.texts}
        stages[label] = delivered.stages

    doc = {
        "meta": {
            "data": str(cfg.data_dir),
            "split": cfg.split,
            # Ties a saved report to the split it scored (tests compare it with a fresh prepare).
            "split_sha256": sha256_file(Path(cfg.data_dir) / f"{cfg.split}.jsonl"),
            "n": len(records),
            "limit": cfg.limit,
            "skipped_unknown_items": unknown,
            "reference_words": 15,
            "fcr_denominators": ctx.denominators,
            "batch_size": cfg.batch_size,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hardware_text": _hardware_text(),
            "python": sys.version.split()[0],
            "command": cfg.command,
        },
        "results": results,
        "delivered_all_grounded": all(
            m["delivered"]["grounding_rate"] == 1.0 for m in results.values()
        ),
        "unavailable": unavailable,
    }
    if pairs:
        raw_texts = {name: modes["raw"] for name, modes in texts.items() if "raw" in modes}
        doc["comparisons"] = compare_systems(
            pairs, records, raw_texts, cfg.bootstrap, cfg.bootstrap_seed, ctx
        )
    _write(cfg, doc, ctx, records, texts, stages)
    return doc


def _write(cfg, doc, ctx, records, texts, stages) -> None:
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", doc)
    (out / "metrics.md").write_text(markdown_tables(doc), encoding="utf-8")
    (out / "samples.md").write_text(
        samples_markdown(records, texts, stages, n=cfg.samples), encoding="utf-8"
    )
    refs = [r.explanation for r in records]
    delivered = {name: modes["delivered"] for name, modes in texts.items()}
    plots.metric_bars(doc["results"], out / "metrics.png")
    plots.length_distributions(delivered, refs, out / "lengths.png")
    plots.feature_frequencies(delivered, refs, ctx.matcher, out / "features.png")


def command_line() -> str:
    return "recx " + " ".join(shlex.quote(a) for a in sys.argv[1:])
