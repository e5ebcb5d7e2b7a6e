"""Lambda assets without Docker.

Each function's asset is the `lyrics_classifier` package (without `modelbuild/`, which
needs torch and never runs in Lambda), its pinned requirements installed by pip for the
Lambda platform, and for the classify function the model directory at `model/`.

Local bundling (`LocalPipBundling`, a jsii `ILocalBundling`) runs this machine's pip with
`--platform manylinux_*_<arch> --only-binary=:all: --python-version 3.12 --implementation cp
--no-deps --target`. The requirements files are complete pinned closures, so `--no-deps`
is exact. If pip cannot run here, CDK falls back to Docker bundling in the SAM build image
of the same runtime (or always, with `-c bundling=docker`).

The installed dependencies are cached under `build/lambda-deps/<hash of requirements and
platform>/` and hard-linked into each asset, so repeated synths (tests, `cdk diff`) do not
re-run pip. The asset hash is computed here from the inputs (requirements, package
sources, model files, architecture), so CDK skips bundling entirely when an asset with
that hash is already staged in cdk.out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerVolume, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .settings import REPO

from lyrics_classifier.contract import MODEL_ASSET_DIR

PYTHON_VERSION = "3.12"
RUNTIME = lambda_.Runtime.PYTHON_3_12
PACKAGE_DIR = REPO / "lambdas" / "lyrics_classifier"
DEPS_CACHE = REPO / "build" / "lambda-deps"
# Python 3.12 Lambda runs on Amazon Linux 2023 (glibc 2.34). pip matches --platform tags
# exactly, so list every manylinux level the wheels may carry (onnxruntime 1.32 ships
# manylinux_2_28 only; manylinux2014 alone finds nothing for it).
_MANYLINUX = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")
_MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}
_DOCKER_PLATFORM = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
# Never shipped: the offline model builder (torch, transformers) and build debris.
_PACKAGE_IGNORE = shutil.ignore_patterns("modelbuild", "statemachine", "__pycache__", "*.pyc", "*.egg-info", ".*")
_MODEL_IGNORE = shutil.ignore_patterns("__pycache__", ".*")
_BUNDLE_VERSION = "3"  # bump to invalidate every asset hash after a change to this file
# Never imported by the classifier or the workflow: test suites and onnxruntime's offline
# tooling (quantiser, transformer optimiser, model tools). ~12 MB of the classify asset, which
# with the multilingual model sits close to the 200 MB we allow it.
PRUNED = ("onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools")
PRUNED_DIR_NAMES = ("tests",)


@dataclasses.dataclass(frozen=True)
class AssetSpec:
    """What goes into one function's asset."""

    name: str  # "classify" or "workflow"
    requirements: Path
    architecture: str  # "arm64" | "x86_64"
    model_dir: Path | None = None  # copied to model/ when given

    def platforms(self) -> list[str]:
        machine = _MACHINE[self.architecture]
        return [f"{tag}_{machine}" for tag in _MANYLINUX]

    def deps_key(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{_BUNDLE_VERSION}|{PYTHON_VERSION}|{' '.join(self.platforms())}|".encode())
        digest.update(self.requirements.read_bytes())
        return digest.hexdigest()[:24]

    def asset_hash(self) -> str:
        """Changes whenever anything that lands in the asset changes."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{self.deps_key()}|".encode())
        _hash_tree(digest, PACKAGE_DIR, skip={"modelbuild", "statemachine", "__pycache__"})
        if self.model_dir is not None:
            digest.update(b"|model|")
            _hash_tree(digest, self.model_dir, skip={"__pycache__"})
        return digest.hexdigest()


def _hash_tree(digest, root: Path, skip: set[str]) -> None:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in skip or part.startswith(".") for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            digest.update(str(rel).encode() + b"\0")
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)


def check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "model.onnx").is_file():
        raise FileNotFoundError(
            f"model directory {model_dir} has no model.onnx: run `make model` "
            "(or point the `model_dir` context key at an exported model)"
        )


def pip_available() -> bool:
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "--version"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def install_dependencies(spec: AssetSpec) -> Path:
    """pip-install the requirements for the Lambda platform once; return the cached dir."""
    target = DEPS_CACHE / f"{spec.architecture}-{spec.deps_key()}"
    if (target / ".complete").exists():
        return target
    DEPS_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=DEPS_CACHE))
    command = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check", "--no-compile",
        "--no-deps",  # the requirements file is the complete pinned closure
        "--only-binary=:all:",
        "--implementation", "cp",
        "--python-version", PYTHON_VERSION,
        *[arg for platform in spec.platforms() for arg in ("--platform", platform)],
        "--target", str(staging),
        "-r", str(spec.requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"pip could not install {spec.requirements.name} for Lambda ({spec.architecture}, "
            f"Python {PYTHON_VERSION}):\n{result.stderr.strip()}\n"
            "Use `-c bundling=docker` to bundle in the SAM build image instead."
        )
    shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: useless in Lambda
    prune(staging)
    (staging / ".complete").write_text(" ".join(command[3:]) + "\n")
    if target.exists():  # a concurrent synth finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    return target


def prune(deps: Path) -> None:
    for relative in PRUNED:
        shutil.rmtree(deps / relative, ignore_errors=True)
    for name in PRUNED_DIR_NAMES:
        for found in sorted(deps.glob(f"*/**/{name}"), reverse=True):
            if found.is_dir():
                shutil.rmtree(found, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def assemble(spec: AssetSpec, output_dir: Path) -> None:
    """Write the complete asset into output_dir (dependencies, package, model)."""
    deps = install_dependencies(spec)
    shutil.copytree(
        deps, output_dir, dirs_exist_ok=True, copy_function=_link_or_copy,
        ignore=shutil.ignore_patterns(".complete"),
    )  # fmt: skip
    shutil.copytree(PACKAGE_DIR, output_dir / "lyrics_classifier", ignore=_PACKAGE_IGNORE)
    if spec.model_dir is not None:
        check_model_dir(spec.model_dir)
        shutil.copytree(spec.model_dir, output_dir / MODEL_ASSET_DIR, ignore=_MODEL_IGNORE, copy_function=_link_or_copy)


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Bundles on this machine with pip; declines (-> Docker) only when pip cannot run."""

    def __init__(self, spec: AssetSpec) -> None:
        self.spec = spec

    def try_bundle(self, output_dir: str, *_options, **_kw) -> bool:  # jsii passes the BundlingOptions
        if not pip_available():
            return False
        assemble(self.spec, Path(output_dir))
        return True


def _docker_command(spec: AssetSpec) -> list[str]:
    steps = [
        "set -eu",
        "pip install --quiet --no-deps --no-compile --only-binary=:all: "
        f"-r /asset-input/{spec.requirements.name} -t /asset-output",
        "rm -rf /asset-output/bin " + " ".join(f"/asset-output/{p}" for p in PRUNED),
        *(f"find /asset-output -mindepth 2 -type d -name {n} -prune -exec rm -rf {{}} +" for n in PRUNED_DIR_NAMES),
        "cp -r /asset-input/lyrics_classifier /asset-output/lyrics_classifier",
        "rm -rf /asset-output/lyrics_classifier/modelbuild /asset-output/lyrics_classifier/statemachine",
        "find /asset-output/lyrics_classifier -name __pycache__ -prune -exec rm -rf {} +",
    ]
    if spec.model_dir is not None:
        steps.append("cp -r /asset-model /asset-output/model")
    return ["bash", "-c", " && ".join(steps)]


def lambda_code(spec: AssetSpec, *, local: bool = True) -> lambda_.Code:
    """The asset for one function: local pip bundling, Docker as the fallback."""
    if spec.model_dir is not None:
        check_model_dir(spec.model_dir)
    volumes = []
    if spec.model_dir is not None:
        volumes.append(DockerVolume(host_path=str(spec.model_dir), container_path="/asset-model"))
    return lambda_.Code.from_asset(
        str(REPO / "lambdas"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=spec.asset_hash(),
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            platform=_DOCKER_PLATFORM[spec.architecture],
            command=_docker_command(spec),
            volumes=volumes,
            local=LocalPipBundling(spec) if local else None,
        ),
    )


def directory_size(path: Path) -> int:
    """Bytes of all files under path (what Lambda counts against the 250 MB unzipped limit)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())
