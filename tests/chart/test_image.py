"""The controller image and the chart agree, and `make image-push` really pushes.

- `make image` (no arguments) builds exactly the image the chart deploys by default: the
  Makefile reads image.repository from values.yaml and the tag from Chart.yaml's appVersion
  (scripts/image.sh), and the rendered Deployment asks for that same reference.
- `make image-push` to a real loopback registry (Debian's docker-registry, started here on
  127.0.0.1:<free port> and stopped after): the registry then serves the image's manifest whose
  config digest is the local image's ID, and a `docker pull` from it gives the same image back.
  This test builds the image (static musl build + docker build) if needed; it needs root for
  apt and dockerd, as `make image` does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import render
import yaml
from helpers import CHART, REPO, REQUIRED


def make_value(*names: str) -> list[str]:
    """The Makefile's value of each variable, as `make` computes it."""
    script = "print-vars: ; @printf '%s\\n' " + " ".join(f"'$({n})'" for n in names)
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "--eval", script, "print-vars"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("IMAGE", "TAG")},
    ).stdout
    return out.splitlines()


def chart_default_image() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = values["image"]["tag"] or str(chart["appVersion"])
    return f"{values['image']['repository']}:{tag}"


def test_make_image_builds_the_image_the_chart_deploys_by_default() -> None:
    image, tag = make_value("IMAGE", "TAG")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert image == values["image"]["repository"]
    assert tag == str(chart["appVersion"])
    # The default tag is the appVersion (an explicit tag in values.yaml would drift from it).
    assert values["image"]["tag"] == "" and values["image"]["digest"] == ""
    assert f"{image}:{tag}" == chart_default_image()
    # What Helm really renders into the Deployment.
    objs = render.render_objects(REQUIRED)
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image}:{tag}"
    # The artifacthub annotation names the same image.
    assert f"image: {image}:{tag}" in chart["annotations"]["artifacthub.io/images"]


def test_image_defaults_follow_the_chart_files(tmp_path: Path) -> None:
    """scripts/image.sh reads the files, it does not repeat their values."""
    fake = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", fake / "scripts")
    shutil.copytree(CHART, fake / "charts" / "gastown-operator")
    values = fake / "charts" / "gastown-operator" / "values.yaml"
    values.write_text(
        values.read_text().replace(
            "repository: ghcr.io/gastown-operator/gastown-controller",
            'repository: "registry.example.com/team/ctl"  # moved',
        )
    )
    chart = fake / "charts" / "gastown-operator" / "Chart.yaml"
    chart.write_text(chart.read_text().replace('appVersion: "0.1.0"', "appVersion: 2.3.4"))

    def ask(what: str) -> str:
        return subprocess.run(
            ["bash", str(fake / "scripts" / "image.sh"), what],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    assert ask("repository") == "registry.example.com/team/ctl"
    assert ask("tag") == "2.3.4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_docker_registry() -> str:
    found = shutil.which("docker-registry")
    if found:
        return found
    lock = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gastown-operator"
    lock.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "flock",
            "-w",
            "900",
            str(lock / "apt.lock"),
            "sh",
            "-c",
            "apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive "
            "apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "
            "docker-registry",
        ],
        check=True,
    )
    found = shutil.which("docker-registry")
    assert found, "docker-registry is not on PATH after installing it"
    return found


@pytest.fixture
def loopback_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in tmp_path; stopped after."""
    binary = ensure_docker_registry()
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "registry.log").read_text()
                assert time.monotonic() < deadline, "the registry did not answer within 30 s"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_make_image_push_to_a_loopback_registry(loopback_registry: str, tmp_path: Path) -> None:
    state = tmp_path / "docker"
    subprocess.run(["bash", str(REPO / "scripts" / "docker.sh"), "ensure", str(state)], check=True)
    try:
        (tag,) = make_value("TAG")
        image = f"{loopback_registry}/gastown-operator/gastown-controller"
        subprocess.run(["make", "-s", "image-push", f"IMAGE={image}"], cwd=REPO, check=True)
        local_id = docker("image", "inspect", "-f", "{{.Id}}", f"{image}:{tag}")

        with urllib.request.urlopen(
            f"http://{loopback_registry}/v2/gastown-operator/gastown-controller/tags/list",
            timeout=10,
        ) as r:
            assert json.load(r)["tags"] == [tag]
        request = urllib.request.Request(
            f"http://{loopback_registry}/v2/gastown-operator/gastown-controller/manifests/{tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            manifest = json.load(r)
        assert manifest["config"]["digest"] == local_id
        assert len(manifest["layers"]) == 1, "one layer: the controller binary"

        # The registry gives the same image back.
        docker("image", "rm", f"{image}:{tag}")
        docker("pull", f"{image}:{tag}")
        assert docker("image", "inspect", "-f", "{{.Id}}", f"{image}:{tag}") == local_id
        docker("image", "rm", f"{image}:{tag}")
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "docker.sh"), "stop", str(state)], check=False
        )
