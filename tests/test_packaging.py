"""`pip install .` into a fresh venv gives a working `whyfailed`, with its grammars and
knowledge base inside the installed package (platforms run the bot from a build)."""

from __future__ import annotations

import json
import subprocess
import sys
import venv

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_diagnoses(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], check=True, timeout=600
    )
    wheel = next(wheels.glob("whyfailed-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    outside = tmp_path / "elsewhere"  # not the checkout: nothing may be found by accident
    outside.mkdir()
    sample = (REPO / "examples" / "visnetic-session.log").read_bytes()
    done = subprocess.run(
        [str(env_dir / "bin" / "whyfailed"), "diagnose", "-", "--format", "json"],
        input=sample,
        capture_output=True,
        cwd=outside,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    ids = {d["recipient"]: d["diagnosis"]["id"] for d in report["deliveries"]}
    assert ids["unknown_user@example.com"] == "unknown-user"
    located = subprocess.run(
        [str(python), "-c", "import bot.resources as r; print(r.grammar_dir(), r.knowledge_dir())"],
        capture_output=True,
        text=True,
        cwd=outside,
        check=True,
    )
    assert "site-packages" in located.stdout and "_data" in located.stdout


@pytest.mark.slow
def test_the_sdist_carries_what_a_deployment_and_its_tests_need(tmp_path):
    """A platform builds from the sdist; the Slack manifest, the Procfile, .env.example and the
    test-server installer must come with it (they live outside the package)."""
    import tarfile

    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = tmp_path.glob("whyfailed-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    wanted = {"Procfile", ".env.example", "slack/manifest.yml", "scripts/install-test-servers.sh", "README.md"}
    assert wanted <= names, sorted(wanted - names)
    assert any(name.startswith("knowledge/") and name.endswith(".md") for name in names)
    assert any(name.startswith("grammar/") and name.endswith(".lark") for name in names)
