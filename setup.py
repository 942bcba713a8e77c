"""Distribution `sparkamp`: Spark jobs for semantic image search and few-shot text labelling."""
from pathlib import Path

from setuptools import find_packages, setup

TEST_ONLY = {"pytest", "tifffile", "httpx", "selenium"}


def _requirements() -> list[str]:
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _name(req: str) -> str:
    return req.split("==")[0].split(">=")[0].strip().lower()


REQS = _requirements()

setup(
    name="sparkamp",
    version="0.1.0",
    description="Spark batch jobs for CNN/FAISS image search and zero/few-shot text labelling",
    python_requires=">=3.11",
    packages=find_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "index", "index.*"]),
    py_modules=["sparkamp"],
    package_data={"jobs.app": ["static/*"]},
    install_requires=[r for r in REQS if _name(r) not in TEST_ONLY],
    extras_require={"test": [r for r in REQS if _name(r) in TEST_ONLY]},
    entry_points={"console_scripts": ["sparkamp = jobs.cli:main"]},
)
