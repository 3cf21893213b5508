"""deploy/ must agree with the code: commands, RECX_* variables, ports, topics, group, images.

Static checks only (no docker engine or cluster here): the manifests are parsed with PyYAML,
the Dockerfile with a small line parser, commands are resolved against the real typer app,
and every RECX_* variable is loaded through the real ``Settings``.
"""

from __future__ import annotations

import json
import re
import shlex
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.main import get_command

from recx_worker.cli import app
from recx_worker.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DEFAULTS = Settings()
# RECX_* variables read by config.py itself rather than mapped onto a Settings field.
NON_FIELD_VARS = {"RECX_CONFIG", "RECX_CACHE_HOME"}


# --------------------------------------------------------------------------- parsers


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerfile_json(path: Path, keyword: str) -> list[str]:
    (rest,) = [r for k, r in dockerfile_instructions(path) if k == keyword]
    return json.loads(rest)


def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    """kind -> documents, over every YAML file in deploy/k8s."""
    docs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.setdefault(doc["kind"], []).append(doc)
    return docs


def one(kind: str) -> dict[str, Any]:
    (doc,) = k8s_docs()[kind]
    return doc


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def recx_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the recx image."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("recx:")
    }


def all_recx_env() -> dict[str, dict[str, str]]:
    """Every place that sets RECX_* variables -> its variables."""
    places = {"Dockerfile": dockerfile_env(DEPLOY / "Dockerfile")}
    places["k8s ConfigMap"] = {k: str(v) for k, v in one("ConfigMap")["data"].items()}
    for kind in ("Deployment", "Job"):
        for doc in k8s_docs()[kind]:
            for container in pod_containers(doc):
                places[f"k8s {kind}/{container['name']}"] = {
                    e["name"]: str(e.get("value", "<from secret>"))
                    for e in container.get("env", [])
                }
    for name, svc in compose()["services"].items():
        places[f"compose {name}"] = {k: str(v) for k, v in svc.get("environment", {}).items()}
    return {
        place: {k: v for k, v in env.items() if k.startswith("RECX_")}
        for place, env in places.items()
    }


# --------------------------------------------------------------------------- settings


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin is dict or any(_is_mapping(a) for a in typing.get_args(annotation))


def settings_path(var: str) -> list[str]:
    """RECX_A__B -> ["a", "b"] if that names a Settings field (or a key of a dict field)."""
    assert var.startswith("RECX_"), var
    parts = var.removeprefix("RECX_").lower().split("__")
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        assert field is not None, f"{var}: {model.__name__} has no field {part!r}"
        if index == len(parts) - 1:
            return parts
        if _is_mapping(field.annotation):
            assert index == len(parts) - 2, f"{var}: too deep below dict field {part!r}"
            return parts
        nested = _model_in(field.annotation)
        assert nested is not None, f"{var}: {part!r} is a scalar, it has no sub-fields"
        model = nested
    return parts


def settings_value(settings: Settings, path: list[str]) -> Any:
    value: Any = settings
    for part in path:
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def as_env_text(value: Any) -> Any:
    """What a loaded value looks like when compared to the variable's text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def parsed_env_text(text: str, value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.loads(text)
    return text.lower() if isinstance(value, bool) else text


# --------------------------------------------------------------------------- CLI


ROOT_COMMAND = get_command(app)


def check_recx_args(args: list[str]) -> None:
    """Resolve ``recx ARGS`` against the real CLI: sub-commands must exist, options parse."""
    command: Any = ROOT_COMMAND
    rest = list(args)
    name = "recx"
    while hasattr(command, "list_commands"):  # a group (typer vendors its own click)
        assert rest, f"recx {' '.join(args)}: names a group, not a command"
        name, *rest = rest
        sub = command.get_command(None, name)
        assert sub is not None, f"recx {' '.join(args)}: no command {name!r}"
        command = sub
    try:
        command.make_context(name, rest)
    except Exception as exc:  # click's UsageError (vendored by typer)
        if not hasattr(exc, "format_message"):
            raise
        pytest.fail(f"recx {' '.join(args)}: {exc.format_message()}")


# --------------------------------------------------------------------------- tests


def test_every_recx_variable_is_a_settings_field_and_loads(monkeypatch):
    places = all_recx_env()
    assert sum(len(env) for env in places.values()) >= 10
    for place, env in places.items():
        for var in env:
            if var in NON_FIELD_VARS:
                assert var in (ROOT / "recx_worker" / "config.py").read_text()
                continue
            settings_path(var)
        fields = {k: v for k, v in env.items() if k not in NON_FIELD_VARS}
        fields = {k: v for k, v in fields.items() if v != "<from secret>"}
        for var, text in fields.items():
            monkeypatch.setenv(var, text)
        loaded = Settings()
        for var, text in fields.items():
            value = settings_value(loaded, settings_path(var))
            assert as_env_text(value) == parsed_env_text(text, value), f"{place}: {var}"
        for var in fields:
            monkeypatch.delenv(var)


def test_settings_path_rejects_unknown_names():
    with pytest.raises(AssertionError):
        settings_path("RECX_KAFKA__BOOTSTRAP_SERVER")
    with pytest.raises(AssertionError):
        settings_path("RECX_KAFKA__GROUP_ID__X")
    assert settings_path("RECX_CHAIN__DEADLINE_MS__LORA") == ["chain", "deadline_ms", "lora"]


def test_topics_and_group_are_the_defaults():
    kafka = DEFAULTS.kafka
    expected = {
        "RECX_KAFKA__INPUT_TOPIC": kafka.input_topic,
        "RECX_KAFKA__OUTPUT_TOPIC": kafka.output_topic,
        "RECX_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "RECX_KAFKA__GROUP_ID": kafka.group_id,
    }
    for place in ("k8s ConfigMap", "compose worker", "compose kafka-init"):
        env = all_recx_env()[place]
        assert {k: env.get(k) for k in expected} == expected, place
    trigger = one("ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == kafka.input_topic
    assert trigger["metadata"]["consumerGroup"] == kafka.group_id
    configmap = one("ConfigMap")["data"]
    assert trigger["metadata"]["bootstrapServers"] == configmap["RECX_KAFKA__BOOTSTRAP_SERVERS"]


def test_compose_creates_the_topics_the_workers_use():
    init = compose()["services"]["kafka-init"]
    script = "\n".join(init["command"])
    for var in ("RECX_KAFKA__INPUT_TOPIC", "RECX_KAFKA__OUTPUT_TOPIC", "RECX_KAFKA__DLQ_TOPIC"):
        assert f'--topic "$${var}"' in script
    assert (
        init["environment"]["RECX_KAFKA__BOOTSTRAP_SERVERS"]
        == (compose()["services"]["worker"]["environment"]["RECX_KAFKA__BOOTSTRAP_SERVERS"])
    )


def test_metrics_port_is_the_settings_default_everywhere():
    port = DEFAULTS.worker.metrics_port
    dockerfile = DEPLOY / "Dockerfile"
    exposed = [r for k, r in dockerfile_instructions(dockerfile) if k == "EXPOSE"]
    assert exposed == [str(port)]
    health = [r for k, r in dockerfile_instructions(dockerfile) if k == "HEALTHCHECK"]
    assert len(health) == 1 and f"127.0.0.1:{port}/" in health[0]
    for place, env in all_recx_env().items():
        if "RECX_WORKER__METRICS_PORT" in env:
            assert env["RECX_WORKER__METRICS_PORT"] == str(port), place
    assert compose()["services"]["worker"]["expose"] == [str(port)]
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    assert [sd["port"] for job in scrape for sd in job["dns_sd_configs"]] == [port]

    deployment = one("Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    (container_port,) = container["ports"]
    assert container_port == {"name": "metrics", "containerPort": port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    (service_port,) = one("Service")["spec"]["ports"]
    assert service_port["port"] == port and service_port["targetPort"] == "metrics"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics", probe


def test_probe_paths_are_served_by_the_worker():
    source = (ROOT / "recx_worker" / "metrics.py").read_text()
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert f'"{path}"' in source, f"{probe} path {path} is not served by recx worker"


def test_container_commands_are_real_recx_commands():
    dockerfile = DEPLOY / "Dockerfile"
    entrypoint = dockerfile_json(dockerfile, "ENTRYPOINT")
    assert entrypoint == ["recx"]
    assert dockerfile_json(dockerfile, "CMD") == ["worker"]
    commands = [dockerfile_json(dockerfile, "CMD")]
    for name, svc in recx_services().items():
        assert isinstance(svc["command"], list), name
        commands.append(svc["command"])
    assert recx_services()["worker"]["command"] == ["worker"]
    for kind in ("Deployment", "Job"):
        for doc in k8s_docs()[kind]:
            for container in pod_containers(doc):
                assert container["image"] == "recx"
                assert "command" not in container, "keep the image's ENTRYPOINT (recx)"
                commands.append(container["args"])
    assert ["worker"] in commands and ["index", "build"] in [c[:2] for c in commands]
    for args in commands:
        check_recx_args(args)


def test_check_recx_args_catches_rot():
    with pytest.raises(AssertionError):
        check_recx_args(["wrker"])
    with pytest.raises(AssertionError):
        check_recx_args(["data"])
    with pytest.raises(pytest.fail.Exception):
        check_recx_args(["data", "prepare", "--no-such-option"])
    check_recx_args(["data", "prepare", "--out", "x"])


def option_value(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def test_paths_passed_to_commands_match_the_settings_paths():
    env = one("ConfigMap")["data"]
    image_env = dockerfile_env(DEPLOY / "Dockerfile")
    for var in ("RECX_PATHS__DATA_DIR", "RECX_PATHS__INDEX_DIR", "RECX_PATHS__ADAPTER_DIR"):
        assert image_env[var] == env[var], var
    commands = [c["args"] for c in pod_containers(one("Job"))]
    commands += [svc["command"] for svc in recx_services().values()]
    out_of = {
        ("data", "prepare"): "RECX_PATHS__DATA_DIR",
        ("index", "build"): "RECX_PATHS__INDEX_DIR",
    }
    checked = 0
    for args in commands:
        if tuple(args[:2]) in out_of:
            assert option_value(args, "--out") == env[out_of[tuple(args[:2])]], args
            checked += 1
        for name in ("--reviews", "--features"):
            if (value := option_value(args, name)) is not None:
                assert value.startswith(env["RECX_PATHS__RAW_DATA"] + "/"), args
        if (value := option_value(args, "--data")) is not None:
            assert value == env["RECX_PATHS__DATA_DIR"], args
    assert checked == 4  # data prepare + index build, in the Job and in compose
    mounts = {m["mountPath"] for c in pod_containers(one("Deployment")) for m in c["volumeMounts"]}
    for var in ("RECX_PATHS__DATA_DIR", "RECX_PATHS__INDEX_DIR"):
        assert any(env[var].startswith(m + "/") for m in mounts), var
    adapter = Path(env["RECX_PATHS__ADAPTER_DIR"]).relative_to("/app")
    assert adapter == DEFAULTS.paths.adapter_dir


def test_kubernetes_objects_reference_each_other():
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service")["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scaled = one("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    configmap = one("ConfigMap")["metadata"]["name"]
    assert {"configMapRef": {"name": configmap}} in container["envFrom"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for doc in (deployment, one("Job"))
        for v in doc["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {one("PersistentVolumeClaim")["metadata"]["name"]}
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > DEFAULTS.worker.grace_period_s


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_images_and_copied_paths_exist():
    pom = ET.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    kafka_version = pom.find("m:properties/m:kafka.version", ns).text
    for name in ("kafka", "kafka-init"):
        assert compose()["services"][name]["image"] == f"apache/kafka:{kafka_version}"
    for keyword, rest in dockerfile_instructions(DEPLOY / "Dockerfile"):
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    requirements = (ROOT / "requirements.txt").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for pin in re.findall(r"\^\(([^)]*)\)==", dockerfile)[0].split("|"):
        assert re.search(rf"^{re.escape(pin)}==", requirements, re.M), pin


def test_compose_workers_scale_and_prometheus_is_optional():
    services = compose()["services"]
    worker = services["worker"]
    assert str(worker["deploy"]["replicas"]).startswith("${RECX_WORKERS")
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["prometheus"]["profiles"] == ["monitoring"]
    for volume in services["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        assert (DEPLOY / source).exists(), source
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_alert_rules_use_metrics_the_worker_exports():
    from recx_worker.metrics import WorkerMetrics

    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        family.name + suffix
        for family in WorkerMetrics().registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(recx_[a-z_]+)", rule["expr"])
    }
    assert len(used) >= 6
    assert used <= exported, used - exported


def test_python_snippets_in_the_dockerfile_import():
    """The build-time model conversion calls real code (a rename would break the build)."""
    import importlib

    text = (DEPLOY / "Dockerfile").read_text()
    imports = re.findall(r"from (recx_worker[\w.]*) import (\w+)", text)
    assert imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


KUBERNETES_VERSION = "1.30.0"  # oldest Kubernetes these manifests are meant for


def test_kubernetes_objects_match_the_api_schemas():
    """Strict validation against the bundled OpenAPI schemas (catches typos and wrong types)."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    validated = 0
    for kind, docs in k8s_docs().items():
        if kind in ("ScaledObject", "Kustomization"):  # CRD / kustomize: no bundled schema
            continue
        for doc in docs:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
            validated += 1
    assert validated >= 6
    broken = one("Service") | {"spec": one("Service")["spec"] | {"portz": [9400]}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)


def test_keda_trigger_has_the_fields_the_kafka_scaler_needs():
    scaled = one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= metadata.keys()
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    assert int(metadata["lagThreshold"]) > 0
    assert scaled["spec"]["maxReplicaCount"] >= scaled["spec"]["minReplicaCount"]


def test_compose_file_matches_the_compose_spec():
    """Validated against the Compose Specification JSON schema vendored by check-jsonschema."""
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema")
    import importlib.resources

    import jsonschema

    schema_file = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema = json.loads((schema_file / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    broken = compose()
    broken["services"]["worker"]["deploy"]["replicaz"] = 2
    assert list(validator.iter_errors(broken))
