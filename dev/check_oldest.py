"""`make test-oldest`'s sanity check: print the transformers the tests import, and fail when it is not the
expected (oldest allowed) version or when a requirement of the swapped packages is unmet.

Usage: PYTHONPATH=.venv-oldest/site:src python dev/check_oldest.py 5.17.0
"""

import sys
from importlib.metadata import PackageNotFoundError, distribution, version

import transformers
from packaging.requirements import Requirement

SWAPPED = ("transformers", "huggingface_hub", "httpx", "httpcore")


def unmet_requirements() -> list[str]:
    unmet = []
    for name in SWAPPED:
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            requires = [name]
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = version(req.name)
            except PackageNotFoundError:
                have = None
            if have is None or not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{name} needs {text}, found {have or 'nothing'}")
    return unmet


def main(expected: str) -> None:
    unmet = unmet_requirements()
    print(f"test-oldest: transformers {transformers.__version__} from {transformers.__file__}")
    if transformers.__version__ != expected or unmet:
        problems = unmet or [f"expected transformers {expected}"]
        sys.exit("test-oldest: the oldest environment is not what it should be:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main(sys.argv[1])
