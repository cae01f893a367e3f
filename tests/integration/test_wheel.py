"""navbuild installed from its wheel works outside the checkout: conf/ and recipes/ ship inside."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_conf_and_recipes_and_plans_outside_the_checkout(tmp_path: Path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True, text=True)
    wheel = next(wheels.glob("navbuild-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "navbuild/conf/navbuild.yaml" in names
    # the navbuild_ray Hydra launcher, as a portion of Hydra's namespace package (no hydra_plugins/__init__.py)
    assert "hydra_plugins/navbuild_ray_launcher/launcher.py" in names and "hydra_plugins/__init__.py" not in names
    assert {"navbuild/recipes/mlp.yaml", "navbuild/recipes/minilm.yaml", "navbuild/recipes/bert.yaml"} <= set(names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["NAVBUILD_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", "import navbuild, sys; print(navbuild.__file__)"],
                          cwd=work, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip().startswith(str(site))
    plan = subprocess.run([sys.executable, "-m", "navbuild", "plan", "recipe=minilm"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert "profile/onnx-opt" in plan.stdout and "missing" in plan.stdout
