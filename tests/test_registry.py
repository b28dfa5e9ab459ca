"""Deploying through a registry: 'make push' to a private one, then pull back by digest and run.

The registry is ../shared/containers/registry (127.0.0.1:5000), started here when it is
not running and stopped again afterwards.
"""

from __future__ import annotations

import json
import re
import typing as t
import uuid

import pytest
import requests

from .conftest import ROOT, SECRET, unavailable
from .conftest_stack import TEST_TAG, build_image, built_images, run, stack_environ, stack_test

REGISTRY = "127.0.0.1:5000"
REGISTRY_SCRIPT = ROOT.parent / "shared" / "containers" / "registry"


def registry_up() -> bool:
    try:
        return requests.get(f"http://{REGISTRY}/v2/", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def registry() -> t.Iterator[str]:
    was_running = registry_up()
    if not was_running:
        if not REGISTRY_SCRIPT.exists():
            unavailable(f"{REGISTRY_SCRIPT} is missing: CI clones the project beside shared/")
        run([REGISTRY_SCRIPT, "start"], timeout=300)
    assert registry_up()
    yield REGISTRY
    if not was_running:
        run([REGISTRY_SCRIPT, "stop"], check=False)


def image_id(ref: str) -> str | None:
    result = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.docker
@stack_test
def test_make_push_then_pull_by_digest_and_run(registry: str) -> None:
    session_image = build_image()
    name = f"flasker-push-{uuid.uuid4().hex[:8]}"
    pushed = run(["make", "-s", "push", f"REGISTRY={registry}"], timeout=900,
                 env=stack_environ(FLASKER_IMAGE=name, FLASKER_TAG=TEST_TAG)).stdout
    version = re.search(r'^version = "(.+)"', (ROOT / "shared/flasker/pyproject.toml")
                        .read_text(), re.M)
    assert version
    revision = run(["git", "rev-parse", "--short=12", "HEAD"]).stdout.strip()
    match = re.search(rf"Pushed ({re.escape(registry)}/{name}@sha256:[0-9a-f]{{64}}) as "
                      rf"{re.escape(registry)}/{name}:{re.escape(version.group(1))} and "
                      rf":({revision}(?:-dirty)?)\.", pushed)
    assert match, pushed
    by_digest, revision_tag = match.groups()
    tags = requests.get(f"http://{registry}/v2/{name}/tags/list", timeout=10).json()["tags"]
    assert sorted(tags) == sorted([version.group(1), revision_tag])

    # Remove the image locally, under every name it has, then pull it back by digest.
    original = image_id(f"{name}:{TEST_TAG}")
    assert original is not None
    names = json.loads(run(["docker", "image", "inspect", original]).stdout)[0]["RepoTags"]
    run(["docker", "rmi", "--no-prune", *names])
    assert image_id(original) is None
    try:
        run(["docker", "pull", by_digest], timeout=600)
        assert image_id(by_digest) == original
        assert run(["docker", "run", "--rm", by_digest, "--version"]).stdout.strip() == (
            f"flasker {version.group(1)}")
        routes = run(["docker", "run", "--rm", "-e", f"FLASKER__APP__SECRET_KEY={SECRET}",
                      by_digest, "routes"]).stdout
        assert "/houses/<int:house_id>" in routes and "/readyz" in routes
        labels = json.loads(run(["docker", "image", "inspect", by_digest]).stdout)[0][
            "Config"]["Labels"]
        assert labels["org.opencontainers.image.revision"] == revision_tag
    finally:
        # The image's other names come back (the session's, for the stack tests that follow).
        if image_id(by_digest) is not None:
            for other in names:
                if name not in other:
                    run(["docker", "tag", by_digest, other])
            run(["docker", "rmi", "--no-prune", by_digest], check=False)
        if image_id(session_image) is None:
            built_images.clear()  # another build for the tests that follow
        digest = by_digest.rpartition("@")[2]
        requests.delete(f"http://{registry}/v2/{name}/manifests/{digest}", timeout=10)
