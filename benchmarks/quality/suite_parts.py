"""The suite's part files (one CSV per finished job) packed into one tar file and back, for the device calls.

A device call returns at most 8 files from $OUT, and the suite writes one part file per job (36 for the full
comparison), so `benchmarks/device/gpu_capability.sh suite` packs them into $OUT/suite_parts.tar. The next call carries
that file as .stage/suite_parts.tar (or the parts unpacked in .stage/suite_parts/) and unpacks it before the
runner resumes, which skips every job whose part file is there.

    python benchmarks/quality/suite_parts.py unpack /root/suite_parts .stage/suite_parts.tar .stage/suite_parts
    python benchmarks/quality/suite_parts.py pack /root/suite_parts "$OUT/suite_parts.tar"

A source may also be a suite CSV the runner wrote (e.g. a committed benchmarks/results/suite_v10_smollm2.csv): it is
the part files' rows one after another, so it splits back into them, one per job, and a fresh checkout resumes a
run from what was committed, without the tar.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

from suite_jobs import job_name, part_path  # beside this script


def pack(parts: Path, tar: Path) -> int:
    """Every part file (*.csv) of `parts` into the tar file `tar`, flat; returns how many."""
    files = sorted(parts.glob("*.csv")) if parts.is_dir() else []
    tmp = tar.with_name(tar.name + ".tmp")  # a call cut short leaves the previous tar whole
    with tarfile.open(tmp, "w") as out:
        for f in files:
            out.add(f, arcname=f.name)
    tmp.replace(tar)
    return len(files)


def _members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Plain *.csv files, by base name only: nothing from the archive lands outside the parts folder."""
    return [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")]


def split(csv_path: Path) -> dict[str, bytes]:
    """part file name -> content, from a suite CSV: its rows grouped by job (config, form, seed; a snapshot such
    as dense@42 is a job of its own, as the runner writes it), each group under the CSV's own header."""
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = {"config", "form", "seed"} - set(fields)
        if missing:
            raise SystemExit(f"{csv_path}: not a suite CSV (no {', '.join(sorted(missing))} column).")
        jobs: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in reader:
            jobs[job_name(row["config"], row["form"], row["seed"])].append(row)
    out = {}
    for job, rows in jobs.items():
        buf = io.StringIO(newline="")
        # the runner's dialect (DictWriter's defaults): its part files come back byte for byte
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        out[part_path(Path(), job).name] = buf.getvalue().encode()
    return out


def _read(src: Path) -> dict[str, bytes]:
    """name -> content of the part files in `src`: a folder, a tar file, a suite CSV, or nothing when it is
    missing."""
    if src.is_dir():
        return {f.name: f.read_bytes() for f in src.glob("*.csv")}
    if not src.is_file():
        return {}
    if src.suffix == ".csv":
        return split(src)
    with tarfile.open(src) as tar:
        return {Path(m.name).name: tar.extractfile(m).read() for m in _members(tar)}


def unpack(parts: Path, sources: list[Path]) -> int:
    """Part files from each source (a tar file or a folder; a missing one is skipped) into `parts`.

    A part file already in `parts` is kept: it is the same job's result, perhaps newer. Returns how many
    files were added.
    """
    parts.mkdir(parents=True, exist_ok=True)
    added = 0
    for src in sources:
        for name, data in sorted(_read(src).items()):
            dest = parts / name
            if dest.exists():
                continue
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.rename(dest)  # the runner takes a .csv as a finished job: it appears whole
            added += 1
    return added


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="PARTS TAR: the part files into one tar file")
    p.add_argument("parts", type=Path)
    p.add_argument("tar", type=Path)
    u = sub.add_parser(
        "unpack", help="PARTS SOURCE...: tar files, folders of part files or suite CSVs into PARTS"
    )
    u.add_argument("parts", type=Path)
    u.add_argument("sources", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        print(f"suite_parts: {pack(args.parts, args.tar)} part files in {args.tar}")
    else:
        n = unpack(args.parts, args.sources)
        print(f"suite_parts: {n} part files added to {args.parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
