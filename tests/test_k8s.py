"""deploy/k8s: the Kubernetes manifests, rendered and validated without a cluster.

Each overlay is rendered by the pinned kubectl's kustomize ('kubectl kustomize', installed
by ``deploy/k8s/install-kubectl``) in a copy of ``deploy/k8s`` whose secret files are the
committed ``*.example`` files. Every resource is validated strictly (an unknown field is an
error) against the schemas of Kubernetes ``K8S_VERSION`` by kubernetes-validate, offline;
KEDA's resources, which it does not know, against ``KEDA_SCHEMA`` below. Then the promises
of DEPLOY.md are checked on the rendered resources.
"""

from __future__ import annotations

import base64
import configparser
import copy
import importlib.resources
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import typing as t
import urllib.parse
import uuid
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from referencing import Registry, Resource

from .conftest import ROOT, unavailable, wait_for
from .conftest_stack import build_image, run

Doc = dict[str, t.Any]

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("production", "dev")
KUBECTL = Path(sys.executable).parent / "kubectl"
# The kubectl deploy/k8s/install-kubectl pins, and the Kubernetes release validated against.
KUBECTL_VERSION = "v1.35.2"
K8S_VERSION = "1.35"
APP_UID = 10001
SECRET_MOUNT = "/run/secrets/flasker"
POD_KINDS = ("Deployment", "StatefulSet", "Job")

# -- KEDA's resources ----------------------------------------------------------------------------
# kubernetes-validate knows Kubernetes' own kinds only. This schema is written from KEDA's
# documentation (keda.sh/docs/2.18: "ScaledObject specification", "Authentication" and the
# "Redis Lists" scaler), for keda.sh/v1alpha1, as strict as Kubernetes' own schemas here: a
# field KEDA does not document is an error. metadata and the HPA behavior are Kubernetes'
# own definitions, taken from kubernetes-validate's schemas.
K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
REDIS_LIST_PARAMETERS = [
    "address", "host", "port", "listName", "listLength", "activationListLength", "enableTLS",
    "unsafeSsl", "databaseIndex", "addressFromEnv", "hostFromEnv", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv",
]
# TriggerAuthentication parameters the redis scaler reads.
REDIS_AUTH_PARAMETERS = {"address", "host", "port", "username", "password", "tls", "ca",
                         "cert", "key"}
_COUNT = {"type": "integer", "minimum": 0}
_NUMBER_TEXT = {"type": "string", "pattern": r"^[0-9]+$"}
_BOOL_TEXT = {"enum": ["true", "false"]}
_NAME_REF: dict[str, t.Any] = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}},
}


def _keda_object(kind: str, spec: dict[str, t.Any]) -> dict[str, t.Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": kind},
            "metadata": {"$ref": K8S_DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": spec,
        },
    }


KEDA_SCHEMA: dict[str, dict[str, t.Any]] = {
    "ScaledObject": _keda_object("ScaledObject", {
        "type": "object",
        "additionalProperties": False,
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "name": {"type": "string", "minLength": 1},
                               "envSourceContainerName": {"type": "string"}},
            },
            "pollingInterval": _COUNT, "cooldownPeriod": _COUNT, "initialCooldownPeriod": _COUNT,
            "idleReplicaCount": _COUNT, "minReplicaCount": _COUNT, "maxReplicaCount": _COUNT,
            "fallback": {
                "type": "object", "additionalProperties": False,
                "required": ["failureThreshold", "replicas"],
                "properties": {"failureThreshold": _COUNT, "replicas": _COUNT,
                               "behavior": {"enum": ["static", "currentReplicas",
                                                     "currentReplicasIfHigher",
                                                     "currentReplicasIfLower"]}},
            },
            "advanced": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "behavior": {"$ref": K8S_DEFS + "io.k8s.api.autoscaling.v2."
                                                            "HorizontalPodAutoscalerBehavior"},
                        },
                    },
                    "scalingModifiers": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"formula": {"type": "string"},
                                       "target": {"type": "string"},
                                       "activationTarget": {"type": "string"},
                                       "metricType": {"enum": ["AverageValue", "Value"]}},
                    },
                },
            },
            "triggers": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                        "metadata": {"type": "object",
                                     "additionalProperties": {"type": "string"}},
                        "authenticationRef": {
                            **_NAME_REF,
                            "properties": {
                                **_NAME_REF["properties"],
                                "kind": {"enum": ["TriggerAuthentication",
                                                  "ClusterTriggerAuthentication"]},
                            },
                        },
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "useCachedMetrics": {"type": "boolean"},
                    },
                    # The Redis Lists scaler: its documented parameters only.
                    "if": {"properties": {"type": {"const": "redis"}}},
                    "then": {"properties": {"metadata": {
                        "required": ["listName"],
                        "propertyNames": {"enum": REDIS_LIST_PARAMETERS},
                        "properties": {"listLength": _NUMBER_TEXT,
                                       "activationListLength": _NUMBER_TEXT,
                                       "databaseIndex": _NUMBER_TEXT,
                                       "enableTLS": _BOOL_TEXT, "unsafeSsl": _BOOL_TEXT},
                    }}},
                },
            },
        },
    }),
    "TriggerAuthentication": _keda_object("TriggerAuthentication", {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "secretTargetRef": {
                "type": "array", "minItems": 1,
                "items": {"type": "object", "additionalProperties": False,
                          "required": ["parameter", "name", "key"],
                          "properties": {"parameter": {"type": "string", "minLength": 1},
                                         "name": {"type": "string", "minLength": 1},
                                         "key": {"type": "string", "minLength": 1}}},
            },
            "env": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": False,
                          "required": ["parameter", "name"],
                          "properties": {"parameter": {"type": "string"},
                                         "name": {"type": "string"},
                                         "containerName": {"type": "string"}}},
            },
            # Other sources KEDA documents, not used here: their inner fields are not checked.
            **{name: {"type": "object"} for name in (
                "podIdentity", "hashiCorpVault", "azureKeyVault", "awsSecretManager",
                "gcpSecretManager", "boundServiceAccountToken")},
            "configMapTargetRef": {"type": "array"},
        },
    }),
}


def _k8s_definitions() -> Resource[t.Any]:
    folder = f"v{K8S_VERSION}.0-local-strict"
    path = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / folder / "_definitions.json")
    return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))


def validate_keda(doc: Doc) -> None:
    """Validate a KEDA resource strictly; raise ``jsonschema.ValidationError`` if it is wrong."""
    schema = KEDA_SCHEMA.get(doc.get("kind", ""))
    if schema is None or not str(doc.get("apiVersion", "")).startswith("keda.sh/"):
        raise LookupError(f"No schema for {doc.get('apiVersion')} {doc.get('kind')}.")
    registry: Registry[t.Any] = _k8s_definitions() @ Registry()
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


def validation_error(doc: Doc) -> str | None:
    """Why ``doc`` fails its schema (Kubernetes' strict one, or KEDA's), or None if it passes."""
    where = f"{doc.get('kind')} '{doc.get('metadata', {}).get('name')}'"
    try:
        if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            validate_keda(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except jsonschema.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path)
        return f"{where}: {path}: {e.message}"
    except (kubernetes_validate.utils.SchemaNotFoundError, LookupError) as e:
        return f"{where}: no schema to validate it against ({getattr(e, 'message', e)})"
    return None


# -- rendering -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubectl() -> Path:
    if not KUBECTL.exists():
        unavailable(f"kubectl {KUBECTL_VERSION} is not in {KUBECTL.parent}: run"
                    " deploy/k8s/install-kubectl (CI's .ci/run does)")
    reply = subprocess.run([str(KUBECTL), "version", "--client"], capture_output=True,
                           text=True, check=False)
    if f"Client Version: {KUBECTL_VERSION}" not in reply.stdout:
        pytest.fail(f"{KUBECTL} is not kubectl {KUBECTL_VERSION} ({reply.stdout.strip()}):"
                    " run deploy/k8s/install-kubectl again.")
    return KUBECTL


def copy_tree(dest: Path, *, with_secrets: bool = True) -> Path:
    """A copy of deploy/k8s whose secret files are the committed examples."""
    tree = dest / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("install-kubectl"))
    for example in tree.glob("overlays/*/secrets/*.example"):
        real = example.with_suffix("")
        real.unlink(missing_ok=True)  # a developer's own secrets never reach a test
        if with_secrets:
            shutil.copyfile(example, real)
    return tree


def render(kubectl: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "kustomize", str(folder)], capture_output=True,
                          text=True, check=False, timeout=120)


class Rendered:
    """One overlay's rendered resources, and the secrets its examples (or files) hold."""

    def __init__(self, overlay: str, text: str, examples: dict[str, str]) -> None:
        self.overlay = overlay
        self.text = text
        self.docs: list[Doc] = [d for d in yaml.safe_load_all(text) if d]
        self.examples = examples

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} '{name}', found {found}"
        return found[0]

    def named(self, kind: str, prefix: str) -> Doc:
        """The generated resource whose name is ``prefix`` plus kustomize's hash suffix."""
        found = [d for d in self.of_kind(kind)
                 if re.fullmatch(rf"{re.escape(prefix)}-[a-z0-9]{{10}}", d["metadata"]["name"])]
        assert len(found) == 1, f"{self.overlay}: expected one generated {kind} '{prefix}-<hash>'"
        return found[0]

    def workloads(self) -> list[Doc]:
        return [d for d in self.docs if d["kind"] in POD_KINDS]

    def container(self, kind: str, name: str) -> Doc:
        containers = self.get(kind, name)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return t.cast(Doc, containers[0])

    def config(self, prefix: str) -> dict[str, str]:
        return t.cast(dict[str, str], self.named("ConfigMap", prefix)["data"])

    def secret(self) -> dict[str, str]:
        data = self.named("Secret", "flasker")["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, kubectl: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    overlay = t.cast(str, request.param)
    tree = copy_tree(tmp_path_factory.mktemp(f"k8s-{overlay}"))
    reply = render(kubectl, tree / "overlays" / overlay)
    assert reply.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{reply.stderr}"
    examples = {p.stem: p.read_text(encoding="utf-8")
                for p in (K8S / "overlays" / overlay / "secrets").glob("*.example")}
    return Rendered(overlay, reply.stdout, examples)


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def pod_env(rendered: Rendered, container: Doc) -> dict[str, str]:
    """A container's environment as the pod sees it: its ConfigMaps, then its own values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(rendered.get("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


# -- validation ----------------------------------------------------------------------------------


def test_every_resource_passes_the_schemas_strictly(rendered: Rendered) -> None:
    assert len(rendered.docs) >= 15
    errors = [e for e in map(validation_error, rendered.docs) if e]
    assert not errors, "\n".join(errors)


def test_validation_rejects_a_misspelled_or_misplaced_field(rendered: Rendered) -> None:
    """The validators have teeth: each kind of mistake below is refused, naming the field."""
    web = copy.deepcopy(rendered.get("Deployment", "flasker-web"))
    web["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert "livenessprobe" in (validation_error(web) or "")

    hpa = copy.deepcopy(rendered.get("HorizontalPodAutoscaler", "flasker-web"))
    hpa["spec"]["minReplicas"] = "two"
    assert "minReplicas" in (validation_error(hpa) or "")

    scaled = copy.deepcopy(rendered.get("ScaledObject", "flasker-worker"))
    scaled["spec"]["maxReplicas"] = 3
    assert "maxReplicas" in (validation_error(scaled) or "")
    scaled = copy.deepcopy(rendered.get("ScaledObject", "flasker-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listname"] = "typo"
    assert "listname" in (validation_error(scaled) or "")
    scaled["spec"]["triggers"][0]["metadata"] = {"listName": "q", "listLength": 5}
    assert "listLength" in (validation_error(scaled) or "")
    scaled = copy.deepcopy(rendered.get("ScaledObject", "flasker-worker"))
    scaled["metadata"]["labelz"] = {}
    assert "labelz" in (validation_error(scaled) or "")

    auth = copy.deepcopy(rendered.get("TriggerAuthentication", "flasker-redis"))
    del auth["spec"]["secretTargetRef"][0]["key"]
    assert "key" in (validation_error(auth) or "")

    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in (validation_error(unknown) or "")


def test_an_overlay_without_its_secret_files_does_not_render(kubectl: Path,
                                                             tmp_path: Path) -> None:
    tree = copy_tree(tmp_path, with_secrets=False)
    reply = render(kubectl, tree / "overlays" / "production")
    assert reply.returncode != 0
    assert "secrets/secret-key" in reply.stderr


# -- what the manifests promise ------------------------------------------------------------------


def test_every_container_is_locked_down_with_requests_and_limits(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        name = f"{workload['kind']} '{workload['metadata']['name']}'"
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}, container '{container['name']}'"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] != 0, where
            if container["image"].rsplit(":", 1)[0].endswith("flasker"):
                assert context["runAsUser"] == APP_UID, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for side in ("requests", "limits"):
                assert set(container["resources"][side]) == {"cpu", "memory"}, where
            # The read-only root leaves /tmp to a writable emptyDir of the pod's own.
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_probes(rendered: Rendered) -> None:
    web = rendered.container("Deployment", "flasker-web")
    port = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert port[web["livenessProbe"]["httpGet"]["port"]] == 8000
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # /readyz answers within 2 s whatever is down (flasker/health.py): the probe waits longer.
    assert web["readinessProbe"]["timeoutSeconds"] > 2

    worker = rendered.container("Deployment", "flasker-worker")
    for probe in ("startupProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:3] == ["flasker", "ping", "worker"]
        timeout = float(command[command.index("--timeout") + 1])
        assert worker[probe]["timeoutSeconds"] > timeout

    beat = rendered.container("Deployment", "flasker-beat")
    for probe in ("startupProbe", "livenessProbe"):
        assert beat[probe]["exec"]["command"] == ["flasker", "ping", "beat"]

    flower = rendered.container("Deployment", "flasker-flower")
    assert flower["livenessProbe"]["httpGet"]["path"] == "/healthcheck"


def test_beat_is_one_replica_recreated_and_never_scaled(rendered: Rendered) -> None:
    beat = rendered.get("Deployment", "flasker-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    targets = [d["spec"]["scaleTargetRef"]["name"]
               for d in rendered.of_kind("HorizontalPodAutoscaler") + rendered.of_kind(
                   "ScaledObject")]
    assert "flasker-beat" not in targets


def test_the_migration_job_runs_db_upgrade_with_the_apps_image(rendered: Rendered) -> None:
    job = rendered.get("Job", "flasker-migrate")
    container = rendered.container("Job", "flasker-migrate")
    assert container["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    images = {rendered.container("Deployment", f"flasker-{role}")["image"]
              for role in ("web", "worker", "beat", "flower")}
    assert images == {container["image"]}
    assert container["image"] != "flasker"  # the overlay named the registry and the tag


def test_the_shutdown_numbers_fit_together(rendered: Rendered) -> None:
    worker = rendered.get("Deployment", "flasker-worker")["spec"]["template"]["spec"]
    env = pod_env(rendered, worker["containers"][0])
    assert env["REMAP_SIGTERM"] == "SIGQUIT"
    soft = int(env["FLASKER__CELERY__WORKER_SOFT_SHUTDOWN_TIMEOUT"])
    assert soft + 5 <= worker["terminationGracePeriodSeconds"]

    gunicorn = (ROOT / "services" / "web" / "gunicorn.conf.py").read_text(encoding="utf-8")
    match = re.search(r'_int\("WEB_GRACEFUL_TIMEOUT", (\d+)', gunicorn)
    assert match
    web = rendered.get("Deployment", "flasker-web")["spec"]["template"]["spec"]
    pre_stop = web["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + int(match.group(1)) < web["terminationGracePeriodSeconds"]


def test_the_roles_settings_are_those_of_the_compose_stack(rendered: Rendered) -> None:
    services = ROOT / "services" / "worker"
    assert rendered.config("flasker-worker") == env_file(services / "worker.env")
    assert rendered.config("flasker-beat") == env_file(services / "beat.env")
    env = rendered.config("flasker-env")
    assert json.loads(env["FLASKER__CELERY__BROKER_TRANSPORT_OPTIONS"]) == {
        "visibility_timeout": 30}


def test_web_has_a_disruption_budget_and_an_autoscaler(rendered: Rendered) -> None:
    web = rendered.get("Deployment", "flasker-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    # No replicas field: the autoscaler owns the count, a deploy does not reset it.
    assert "replicas" not in web["spec"]
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    pdb = rendered.get("PodDisruptionBudget", "flasker-web")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    hpa = rendered.get("HorizontalPodAutoscaler", "flasker-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "flasker-web"}
    # The budget keeps pods serving through a drain, yet never blocks the drain outright.
    if "minAvailable" in pdb["spec"]:
        assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    service = rendered.get("Service", "flasker-web")
    assert service["spec"]["selector"].items() <= labels.items()


def test_workers_scale_on_the_length_of_the_projects_queue(rendered: Rendered) -> None:
    worker = rendered.get("Deployment", "flasker-worker")
    assert "replicas" not in worker["spec"]
    scaled = rendered.get("ScaledObject", "flasker-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "flasker-worker"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"

    # The list Celery's Redis transport keeps: the project's default queue, in the broker's
    # database, over TLS when the broker URL says rediss://.
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "reference" / "default.cfg", encoding="utf-8")
    assert trigger["metadata"]["listName"] == cfg["CELERY"]["TASK_DEFAULT_QUEUE"]
    secret = rendered.secret()
    broker = urllib.parse.urlsplit(secret["broker-url"].strip())
    assert trigger["metadata"]["databaseIndex"] == (broker.path.strip("/") or "0")
    assert trigger["metadata"]["enableTLS"] == str(broker.scheme == "rediss").lower()

    auth = rendered.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) <= REDIS_AUTH_PARAMETERS
    for ref in refs.values():
        assert ref["name"] == rendered.named("Secret", "flasker")["metadata"]["name"]
    # KEDA reads these values as they are (no newline stripped): they must match the URL's.
    assert secret[refs["address"]["key"]] == f"{broker.hostname}:{broker.port}"
    assert secret[refs["password"]["key"]] == broker.password


def test_secrets_reach_the_pods_as_files_only(rendered: Rendered) -> None:
    secret = rendered.named("Secret", "flasker")
    name = secret["metadata"]["name"]
    # The Secret holds exactly the overlay's files, and only it holds them.
    assert rendered.secret() == rendered.examples
    assert rendered.of_kind("Secret") == [secret]
    values = [v.strip() for v in rendered.examples.values()]
    for value in values:
        assert value not in rendered.text, f"a secret's value is in plain text: {value!r}"

    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        mounted = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == name]
        for container in pod["containers"]:
            if not container["image"].rsplit(":", 1)[0].endswith("flasker"):
                continue
            where = f"{workload['metadata']['name']}/{container['name']}"
            env = pod_env(rendered, container)
            assert mounted, where
            assert {"mountPath": SECRET_MOUNT, "name": mounted[0]["name"],
                    "readOnly": True} in container["volumeMounts"], where
            files = {k: v for k, v in env.items() if k.endswith("_FILE")}
            assert "FLASKER__APP__SECRET_KEY_FILE" in files, where
            for variable, path in files.items():
                assert path.startswith(SECRET_MOUNT + "/"), (where, variable)
                assert path.rsplit("/", 1)[1] in rendered.examples, (where, variable)
            for variable, value in env.items():
                assert not re.search(r"://[^/\s]*:[^/\s]*@", value), (where, variable)
                assert not any(v and v in value for v in values), (where, variable)


def test_every_reference_names_a_rendered_resource(rendered: Rendered) -> None:
    """Generated names carry a hash: a reference kustomize did not rewrite points nowhere."""
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered.docs}
    [namespace] = rendered.of_kind("Namespace")
    for doc in rendered.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
    for scaler in rendered.of_kind("HorizontalPodAutoscaler") + rendered.of_kind(
            "ScaledObject"):
        assert ("Deployment", scaler["spec"]["scaleTargetRef"]["name"]) in names


def test_install_kubectl_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        unavailable("shellcheck is not installed (pip install 'flasker[test]' brings it)")
    reply = subprocess.run([shellcheck, str(K8S / "install-kubectl")], capture_output=True,
                           text=True, check=False)
    assert reply.returncode == 0, reply.stdout + reply.stderr


def test_the_deploy_steps_select_the_right_resources(rendered: Rendered) -> None:
    """DEPLOY.md applies by label: namespace and configuration, then the Job, then the rest."""
    def component(doc: Doc) -> str:
        return t.cast(str, doc["metadata"].get("labels", {}).get(
            "app.kubernetes.io/component", ""))

    first = sorted({d["kind"] for d in rendered.docs
                    if component(d) in ("namespace", "config")})
    assert first == ["ConfigMap", "Namespace", "Secret"]
    assert [d["kind"] for d in rendered.docs if component(d) == "migrate"] == ["Job"]
    assert all(component(d) for d in rendered.docs)


# -- the dev overlay's pods, run by Docker as a kubelet would run them ---------------------------


def fresh_dev_secrets(folder: Path) -> None:
    """Write the dev overlay's secret files with fresh values, as DEPLOY.md's snippet does."""
    pg, redis = secrets.token_hex(24), secrets.token_hex(24)
    files = {
        "secret-key": secrets.token_hex(24),
        "postgres-password": pg,
        "db-url": f"postgresql+psycopg://flasker:{pg}@postgres:5432/flasker\n",
        "broker-url": f"redis://:{redis}@redis:6379/0\n",
        "result-backend": f"redis://:{redis}@redis:6379/1\n",
        "redis-address": "redis:6379",
        "redis-password": redis,
        "flower-basic-auth": f"admin:{secrets.token_hex(24)}\n",
    }
    for name, value in files.items():
        (folder / name).write_text(value, encoding="utf-8")


class Pods:
    """Docker containers made from rendered pod templates; all removed by :meth:`remove`."""

    def __init__(self, rendered: Rendered, folder: Path, images: dict[str, str]) -> None:
        self.rendered = rendered
        self.folder = folder
        self.images = images
        self.prefix = f"flasker-k8s-{uuid.uuid4().hex[:8]}"
        self.network = self.prefix
        self.containers: list[str] = []
        self.volumes: list[str] = []
        run(["docker", "network", "create", self.network])

    def docker_run(self, kind: str, name: str, *, detach: bool = True,
                   alias: str | None = None) -> str:
        """Run the pod template of ``kind`` ``name``: its user, lock-down, env and volumes."""
        pod = self.rendered.get(kind, name)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        context = container["securityContext"]
        group = pod["securityContext"]["fsGroup"]
        cname = f"{self.prefix}-{name}"
        args = ["docker", "run", "--name", cname, "--hostname", cname,
                "--network", self.network, "--network-alias", alias or name,
                "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
                "--group-add", str(group)]
        if context["readOnlyRootFilesystem"]:
            args.append("--read-only")
        args += [f"--cap-drop={c}" for c in context["capabilities"]["drop"]]
        if context["allowPrivilegeEscalation"] is False:
            args += ["--security-opt", "no-new-privileges"]
        for key, value in pod_env(self.rendered, container).items():
            args += ["--env", f"{key}={value}"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:  # a StatefulSet's volumeClaimTemplate: a named volume
                self.volumes.append(f"{cname}-{mount['name']}")
                args += ["--volume", f"{self.volumes[-1]}:{mount['mountPath']}"]
            elif "secret" in volume:
                args += ["--volume", f"{self.secret_folder(volume['secret'], group)}:"
                                     f"{mount['mountPath']}:ro"]
            else:  # an emptyDir: a folder of the node's, mode 0777 (Docker's tmpfs would
                # copy the image folder's mode instead)
                assert "emptyDir" in volume, volume
                empty = self.folder / f"{name}-{mount['name']}"
                empty.mkdir()
                empty.chmod(0o777)
                args += ["--volume", f"{empty}:{mount['mountPath']}"]
        command = container.get("command", [])
        if command:
            args += ["--entrypoint", command[0]]
        args += [self.images[container["image"]], *command[1:], *container.get("args", [])]
        self.containers.append(cname)
        if detach:
            run([*args[:2], "--detach", *args[2:]])
        else:
            result = run(args, timeout=300, check=False)
            assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"
        return cname

    def service(self, name: str, image: str, user: str, options: list[str],
                command: list[str], ready: list[str]) -> None:
        """A database the URLs name, started and waited for."""
        cname = f"{self.prefix}-{name}"
        self.containers.append(cname)
        run(["docker", "run", "--detach", "--name", cname, "--network", self.network,
             "--network-alias", name, "--user", user, *options, image, *command])
        wait_for(lambda: run(["docker", "exec", cname, *ready], check=False).returncode == 0,
                 timeout=90, interval=1, what=f"{name} to be ready")

    def secret_folder(self, source: Doc, group: int) -> Path:
        """The Secret's keys as files, mode ``defaultMode`` and group ``fsGroup``, as mounted."""
        folder = self.folder / f"secret-{group}"
        if not folder.exists():
            folder.mkdir()
            secret = self.rendered.get("Secret", source["secretName"])
            for key, value in secret["data"].items():
                path = folder / key
                path.write_bytes(base64.b64decode(value))
                os.chown(path, 0, group)
                path.chmod(source["defaultMode"])
            folder.chmod(0o755)
        return folder

    def probe(self, cname: str, container: Doc, probe: str) -> None:
        """Run a probe as the kubelet would, until it passes within its failure threshold."""
        spec = container[probe]
        if "exec" in spec:
            command = spec["exec"]["command"]
        else:  # httpGet, from inside the pod: 'flasker ping url' is a plain GET
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            port = ports.get(spec["httpGet"]["port"], spec["httpGet"]["port"])
            command = ["flasker", "ping", "url", f"http://127.0.0.1:{port}{spec['httpGet']['path']}"]
        budget = spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3)
        try:
            wait_for(lambda: run(["docker", "exec", cname, *command], check=False,
                                 timeout=spec.get("timeoutSeconds", 1) + 30).returncode == 0,
                     timeout=max(budget, 60), interval=1, what=f"{probe} of {cname}")
        except AssertionError as e:
            logs = run(["docker", "logs", "--tail", "40", cname], check=False)
            raise AssertionError(f"{e}\n--- logs\n{logs.stdout}{logs.stderr}") from None

    def remove(self) -> None:
        for cname in self.containers:
            run(["docker", "rm", "--force", "--volumes", cname], check=False)
        for volume in self.volumes:
            run(["docker", "volume", "rm", volume], check=False)
        run(["docker", "network", "rm", self.network], check=False)


@pytest.mark.docker
def test_the_dev_overlays_pods_run_as_rendered(kubectl: Path, tmp_path: Path) -> None:
    """Each pod of the dev overlay, run by Docker with its user, lock-down, env and volumes.

    Not a cluster, but every part of a pod the app sees: the Secret's files read through the
    _FILE variables, the read-only root with emptyDirs, the migration Job, each probe's
    command, the worker's shutdown within its grace period, and the list KEDA counts.
    """
    image = build_image()
    tree = copy_tree(tmp_path)
    fresh_dev_secrets(tree / "overlays" / "dev" / "secrets")
    reply = render(kubectl, tree / "overlays" / "dev")
    assert reply.returncode == 0, reply.stderr
    rendered = Rendered("dev", reply.stdout, {})
    images = {"flasker:dev": image,
              "postgres:17": os.environ.get("POSTGRES_IMAGE", "postgres:17"),
              "redis:7": os.environ.get("REDIS_IMAGE", "redis:7")}
    pods = Pods(rendered, tmp_path, images)
    try:
        # PostgreSQL and Redis stand for the managed services, as the URLs name them (the
        # base images here are stand-ins whose users differ from the official images' 999,
        # which the dev overlay's StatefulSets name).
        secret = {k: base64.b64decode(v).decode() for k, v in
                  rendered.named("Secret", "flasker")["data"].items()}
        pods.service("postgres", images["postgres:17"], "postgres",
                     ["--env", "POSTGRES_USER=flasker", "--env", "POSTGRES_DB=flasker",
                      "--env", f"POSTGRES_PASSWORD={secret['postgres-password']}"], [],
                     ["pg_isready", "-U", "flasker", "-d", "flasker"])
        pods.service("redis", images["redis:7"], "redis",
                     ["--env", f"REDISCLI_AUTH={secret['redis-password']}"],
                     ["redis-server", "--requirepass", secret["redis-password"]],
                     ["sh", "-c", '[ "$(redis-cli ping)" = PONG ]'])
        pods.docker_run("Job", "flasker-migrate", detach=False)
        started = {}
        for name in ("flasker-web", "flasker-worker", "flasker-beat"):
            started[name] = pods.docker_run("Deployment", name)
        for name, cname in started.items():
            container = rendered.container("Deployment", name)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    pods.probe(cname, container, probe)

        # The backlog KEDA counts: with no worker, tasks wait in the list the trigger names,
        # in its database, read with the TriggerAuthentication's password.
        worker = rendered.get("Deployment", "flasker-worker")["spec"]["template"]["spec"]
        stop = run(["docker", "stop", "--time", str(worker["terminationGracePeriodSeconds"]),
                    started["flasker-worker"]], timeout=120)
        assert stop.returncode == 0
        state = run(["docker", "inspect", "--format", "{{.State.ExitCode}}",
                     started["flasker-worker"]]).stdout.strip()
        assert state == "0"  # a soft shutdown, not a SIGKILL at the grace period's end
        [trigger] = rendered.get("ScaledObject", "flasker-worker")["spec"]["triggers"]
        password = base64.b64decode(rendered.named("Secret", "flasker")["data"][
            "redis-password"]).decode()

        def backlog() -> int:
            return int(run(["docker", "exec", "--env", f"REDISCLI_AUTH={password}",
                            f"{pods.prefix}-redis", "redis-cli", "-n",
                            trigger["metadata"]["databaseIndex"], "LLEN",
                            trigger["metadata"]["listName"]]).stdout.strip())

        before = backlog()
        run(["docker", "exec", "-i", started["flasker-web"], "flasker", "shell"],
            input="from app.tasks import census\nfor _ in range(7):\n    census.delay()\n",
            timeout=120)
        # beat's periodic 'tick' (every 10 s) may join them meanwhile.
        assert before + 7 <= backlog() <= before + 9
    finally:
        pods.remove()
