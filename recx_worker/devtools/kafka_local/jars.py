"""Where the Kafka broker jars and the ``java`` binary come from.

Order: ``KAFKA_HOME`` (an official Apache Kafka distribution, ``$KAFKA_HOME/libs``), else a
cache filled once from Maven Central by the Maven project in ``deploy/kafka/``
(``~/.cache/recx/kafka/<version>/libs``, base dir overridable with ``RECX_KAFKA_CACHE``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from recx_worker.config import CACHE_HOME

REPO_POM = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "pom.xml"
MARKER = ".complete"
EXISTING_CLUSTER_HINT = (
    "To use a Kafka cluster you already run instead, skip `recx kafka up` and set "
    "RECX_KAFKA__BOOTSTRAP_SERVERS=host:9092 (tests: RECX_TEST_BOOTSTRAP=host:9092)."
)


class KafkaSetupError(RuntimeError):
    """Something the local Kafka needs (Java, Maven, jars, free ports) is missing."""


@dataclass(frozen=True)
class KafkaRuntime:
    """A ``java`` executable plus the directory of jars to put on its class path."""

    java: str
    libs: Path
    version: str
    source: str  # "KAFKA_HOME" or "maven-cache"

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (candidate := Path(java_home) / "bin" / "java").is_file():
        return str(candidate)
    return shutil.which("java")


def pom_path() -> Path:
    """The Maven project that pins the Kafka release (``RECX_KAFKA_POM`` overrides)."""
    return Path(os.environ.get("RECX_KAFKA_POM", REPO_POM))


def pinned_version(pom: Path | None = None) -> str:
    """The ``kafka.version`` property of the Maven project."""
    text = (pom or pom_path()).read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if not match:
        raise KafkaSetupError(f"{pom or pom_path()} has no <kafka.version> property")
    return match.group(1).strip()


def cache_root() -> Path:
    return Path(os.environ.get("RECX_KAFKA_CACHE", CACHE_HOME / "kafka"))


def _kafka_home_runtime(java: str, home: Path) -> KafkaRuntime:
    libs = home / "libs"
    jars = sorted(libs.glob("kafka_2.13-*.jar"))
    if not jars:
        raise KafkaSetupError(
            f"KAFKA_HOME={home} is not an Apache Kafka distribution: no libs/kafka_2.13-*.jar "
            "(download one from https://kafka.apache.org/downloads and unpack it)."
        )
    version = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return KafkaRuntime(java=java, libs=libs, version=version, source="KAFKA_HOME")


def _missing_message(missing: list[str]) -> str:
    lines = [f"Cannot start a local Kafka: {' and '.join(missing)} not found."]
    if any("Java" in item for item in missing):
        lines.append("Install a Java runtime (17 or newer) or set JAVA_HOME.")
    if any("Maven" in item for item in missing):
        lines.append(
            "Maven is needed once to fetch the Kafka jars from Maven Central; instead you can "
            "set KAFKA_HOME to an unpacked Apache Kafka 4.x distribution "
            "(https://kafka.apache.org/downloads)."
        )
    lines.append(EXISTING_CLUSTER_HINT)
    return "\n".join(lines)


def resolve_runtime(fetch: bool = True) -> KafkaRuntime:
    """Find java and the Kafka jars, fetching the jars with Maven on first use."""
    java = find_java()
    home = os.environ.get("KAFKA_HOME")
    if home:
        if java is None:
            raise KafkaSetupError(_missing_message(["Java (`java` on PATH or JAVA_HOME)"]))
        return _kafka_home_runtime(java, Path(home))
    pom = pom_path()
    if not pom.is_file():
        raise KafkaSetupError(
            f"The Maven project {pom} is missing (run from a recx checkout or set RECX_KAFKA_POM), "
            f"or set KAFKA_HOME to an Apache Kafka distribution. {EXISTING_CLUSTER_HINT}"
        )
    version = pinned_version(pom)
    libs = cache_root() / version / "libs"
    cached = _cache_complete(libs, pom)
    missing = []
    if java is None:
        missing.append("Java (`java` on PATH or JAVA_HOME)")
    if not cached and shutil.which("mvn") is None:
        missing.append("Maven (`mvn` on PATH)")
    if missing:
        raise KafkaSetupError(_missing_message(missing))
    assert java is not None
    if not cached:
        if not fetch:
            raise KafkaSetupError(f"Kafka jars not fetched yet into {libs}")
        fetch_jars(pom, libs)
    return KafkaRuntime(java=java, libs=libs, version=version, source="maven-cache")


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _cache_complete(libs: Path, pom: Path) -> bool:
    marker = libs / MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest(pom)


def fetch_jars(pom: Path, libs: Path) -> Path:
    """Copy the project's runtime dependencies into ``libs`` once (file lock, atomic rename)."""
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cache_complete(libs, pom):
            return libs
        staging = libs.parent / "libs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(pom),
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise KafkaSetupError(
                "Fetching the Kafka jars with Maven failed "
                f"(`{' '.join(cmd)}`):\n{(result.stdout + result.stderr)[-2000:]}\n"
                "Check network access to Maven Central, or set KAFKA_HOME to an Apache Kafka "
                "distribution."
            )
        (staging / MARKER).write_text(_pom_digest(pom) + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def cache_size_bytes(libs: Path) -> int:
    return sum(p.stat().st_size for p in libs.glob("*.jar"))
