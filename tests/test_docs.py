"""The README and docs keep their promises: the two fresh-machine commands first, a README a user can read
(at most 250 lines), every table generated from a committed CSV with its provenance, links that resolve, a quick
start that parses, and Python snippets that run."""

import csv
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
REGION = re.compile(r"<!-- table: (\S+) -->")


def _report():
    """benchmarks/report.py as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import report
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return report


def _reporting(module: str):
    """benchmarks/reporting/<module>.py, imported as report.py imports it."""
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(f"reporting.{module}")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_readme_starts_with_the_two_commands():
    head = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in head.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_sections_in_order():
    heads = [h for h in re.findall(r"^## (.+)$", README.read_text(), re.M)]
    order = [
        "Install",
        "Quick start",
        "How it works",
        "Results",
        "From Python",
        "With TRL or the Hugging Face Trainer",
    ]
    order += ["Supported models", "Limits and known negative results"]
    assert [h for h in heads if h in order] == order


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_generated_tables_match_the_csvs():
    """README.md, docs/*.md and docs/results.md (generated whole) are what report.py makes of the CSVs now."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_table_comes_from_a_committed_csv_with_provenance():
    """A number in a table is only as good as the run behind it: each CSV a table or the headline reads is in git
    and every row names the command and the commit that made it."""
    report = _report()
    names = {m for p in [README, *DOCS] for m in REGION.findall(p.read_text())}
    paths = {REPO / n for n in names if n not in report.NAMED}
    paths |= {REPO / report.RESULTS / c for c, _ in report.HEADLINE}
    paths |= {
        REPO / report.RESULTS / s.csv for s in report.SECTIONS if (REPO / report.RESULTS / s.csv).is_file()
    }
    tracked = subprocess.run(
        ["git", "ls-files", "--", *map(str, paths)], cwd=REPO, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    untracked = {p.relative_to(REPO).as_posix() for p in paths} - set(tracked.stdout.split())
    assert not untracked, f"tables read CSVs that are not committed: {sorted(untracked)}"
    for p in paths:
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows, p
        # a prediction (longest_prediction.csv: `lemo plan` and fitted slopes) names its basis, not a machine
        machine = next((k for k in ("gpu", "device", "cpu", "basis") if k in rows[0]), None)
        assert machine, f"{p.name} does not say which machine ran it"
        for i, r in enumerate(rows):
            assert r.get("commit") and r.get(machine), f"{p.name} row {i + 2} lacks its commit or machine"
            # selection_bias.csv predates the command column; its command is named in docs/capability.md
            assert r.get("command") or p.name == "selection_bias.csv", (
                f"{p.name} row {i + 2} lacks its command"
            )


def test_headline_has_misses():
    """The headline shows where lemo loses, not only where it wins."""
    table = _report().headline_table()
    assert "lemo better" in table and "lemo worse" in table


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_relative_links_and_anchors_resolve():
    broken = []
    for page in [README, *DOCS]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                heads = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
                if anchor not in {_slug(h) for h in heads}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_docs_index_lists_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    missing = [p.name for p in DOCS if p.name != "README.md" and f"]({p.name}" not in index]
    assert not missing, f"docs/README.md does not link {missing}"
    for group in ("## Guides", "## Reference", "## Results", "## Design"):
        assert group in index


def test_doc_titles_carry_no_history():
    for page in DOCS:
        title = page.read_text().splitlines()[0]
        assert not re.search(r"issue|session|Run \d", title, re.I), f"{page.name}: {title}"


def test_quick_start_is_the_config_the_trial_runs():
    """The README's CPU quick start is one `lemo finetune` of configs/quickstart.yaml, whose keys all load; the
    trial (`make trial`) takes the block from the README, so what it times is what the README says."""
    from lemo.config import FinetuneConfig, load_yaml

    text = README.read_text()
    block = _blocks(text.split("<!-- quick start: cpu -->", 1)[1], "bash")[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:2] == ["lemo", "finetune"]
    config = load_yaml(REPO / argv[argv.index("--config") + 1], FinetuneConfig)
    assert isinstance(config, FinetuneConfig)
    assert config.seq_len <= 2048 and config.steps <= 10  # sized for 5 minutes on 2 CPU cores
    trial = (REPO / "dev" / "new_user_trial.sh").read_text()
    assert "<!-- quick start: cpu -->" in trial
    # The trial's own Python (heredocs) imports lemo's names as they are now: a moved module broke it once.
    for line in re.findall(r"^(?:from lemo[\w.]* import .+|import lemo[\w.]*)$", trial, re.M):
        exec(line, {})


@pytest.mark.extra("matplotlib")
def test_diagram_script_writes_the_readme_diagram(tmp_path):
    assert "(docs/how_it_works.png)" in README.read_text()
    out = tmp_path / "d.png"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "figures" / "how_it_works_diagram.py"), "--out", str(out)],
        check=True,
    )
    assert out.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", [0, pytest.param(1, marks=pytest.mark.extra("trl", "datasets"))], ids=["from-python", "trl"]
)
def test_readme_python_snippets_run(index, tmp_path):
    """Every Python snippet of the README runs as written (the bundled SmolLM2 on CPU)."""
    snippets = _blocks(README.read_text(), "python")
    assert len(snippets) == 2
    script = tmp_path / "snippet.py"
    script.write_text(snippets[index])
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if index == 0:
        from lemo.config import SparsityConfig

        # the kept share of the sparse layers was printed, so elimination ran
        assert str(SparsityConfig().keep_ratio) in proc.stdout


def test_every_command_has_working_help(capsys):
    from lemo.cli.__main__ import COMMANDS, main

    for command in [*COMMANDS, "env"]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: lemo" in capsys.readouterr().out
    # `lemo bench` hands its flags to the benchmark scripts, whose help (and usage line) is their own.
    for argv, flag in ((["bench", "--help"], "--shape"), (["bench", "plot", "--help"], "--out-dir")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "usage:" in out and flag in out


def test_demo_config_spells_out_the_defaults():
    """configs/demo.yaml says its sparsity block is the defaults, spelled out: each key it sets equals
    SparsityConfig()'s, so a change of the defaults cannot leave the demo on the old ones."""
    import yaml

    import lemo

    block = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["sparsity"]
    default = lemo.SparsityConfig()
    assert {k: getattr(default, k) for k in block} == block


def test_liger_headline_reads_the_default_keep_only():
    """The headline's `default` rows are SparsityConfig()'s keep, not a run's extra keeps (gpu_liger.sh
    SHORT_KEEPS); an older config name counts at the keep it was run with."""
    from lemo.config import SparsityConfig

    report = _report()
    keep = str(SparsityConfig().keep_ratio)
    base = {"seq_len": "32768", "completion": "0.02", "gpu": "NVIDIA H100", "status": "ok"}

    def row(config, commit, keep_ratio, step):
        return {
            **base,
            "config": config,
            "commit": commit,
            "keep_ratio": keep_ratio,
            "median_step_s": step,
            "peak_alloc_gib": step,
        }

    rows = [
        row("liger-exact", "a", "1.0", "5.0"),
        row("liger-lemo-random+gc", "a", "0.7", "4.5"),
        row("default+gc", "a", "0.7", "4.6"),
        row("liger-exact", "b", "1.0", "5.0"),
        row("liger-default+gc", "b", "0.9", "3.0"),
        row("liger-default+gc", "b", keep, "4.0"),
    ]
    got = {h.against.split("`")[1]: h.lemo for h in report.headline_liger(rows)}
    assert got == {"liger-default+gc": 4.0}  # the 0.7 `default+gc` row is an earlier default: not shown
    rows[-1]["keep_ratio"] = "0.9"
    del rows[-2]
    assert {h.against.split("`")[1]: h.lemo for h in report.headline_liger(rows)} == {
        "liger-lemo-random+gc": 4.5
    }


def _bench_row(config, commit, T, step, gpu="NVIDIA H100", **more):
    return {
        "config": config, "commit": commit, "seq_len": T, "median_step_s": step, "peak_alloc_gib": "20",
        "peak_reserved_gib": "21", "tokens_per_s": "1", "keep_ratio": "0.5", "completion": "0.02",
        "status": "ok", "gpu": gpu, **more,
    }  # fmt: skip


def test_speed_ratios_stay_within_one_run_and_one_memory_stack():
    """A ratio is only taken within one run: another card's Liger row is no baseline. A long offload row is set
    against Liger's exact config with the same offload and tiling, and the Liger CSV keeps its table kind."""
    table = _reporting("tables").table
    rows = [
        _bench_row("liger-exact", "a", "32768", "5.0", gpu="NVIDIA H200"),
        _bench_row("liger-default+gc", "a", "32768", "4.0", gpu="NVIDIA H200"),
        _bench_row("liger-exact", "b", "32768", "8.0"),
        _bench_row("liger-default+gc", "b", "32768", "4.0"),
        _bench_row("liger-exact+offload+tiled-attn", "b", "131072", "90.0", host_pool_gib="32"),
        _bench_row("liger-default+offload+tiled-attn", "b", "131072", "60.0", host_pool_gib="24"),
    ]
    lines = [line for line in table(rows).splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].split("|")]
    col = head.index("vs liger-exact")
    got = [[c.strip() for c in line.split("|")][col] for line in lines[1:]]
    assert got == ["1.00x", "0.80x", "1.00x", "0.50x", "1.00x", "0.67x"]
    assert "pinned host GiB" in head and "NVIDIA H200, NVIDIA H100" in table(rows)
    report = _report()
    long = [h for h in report.headline_liger(rows) if "128K" in h.against]
    assert [(h.lemo, h.base) for h in long] == [(60.0, 90.0)]


def test_plain_text_suite_headline_reports_perplexity_lower_is_better():
    report = _report()
    rows = []
    for config, steps, acc, ppl in (("keep50", "60", 0.40, 24.4), ("dense@43", "43", 0.30, 24.1)):
        for seed, jitter in (("0", 0.0), ("1", 0.01), ("2", -0.01)):
            base = {"config": config, "form": "text", "eval_len": "16384", "seed": seed, "steps": steps}
            rows.append({**base, "metric": "token_accuracy", "family": "kv", "value": str(acc + jitter)})
            rows.append({**base, "metric": "ppl", "family": "-", "value": str(ppl + jitter)})
    got = report.headline_suite(rows, "s.csv", "dense@43", lemo="keep50", form="text")
    assert [h.measure.split(", ")[1] for h in got] == ["answer-token accuracy at 16K", "perplexity at 16K"]
    assert [h.verdict() for h in got] == ["**lemo better**", "**lemo worse**"]
    assert all(
        "plain-text rows" in h.against and "equal GPU time (43 against 60 steps)" in h.against for h in got
    )


def test_suite_headline_compares_only_the_seeds_both_configs_ran():
    """A run resumed with more seeds of dense LoRA alone (v14's seeds 3-5): a seed fixes the training rows and
    the questions, so the default's seeds 0-1 are compared with dense's 0-1, not with a mean over 0-3."""
    report = _report()
    rows = []
    for config, seeds in (
        ("default", {"0": 0.5, "1": 0.6}),
        ("dense", {"0": 0.6, "1": 0.7, "2": 0.1, "3": 0.1}),
    ):
        for seed, value in seeds.items():
            base = {"config": config, "form": "sup", "eval_len": "16384", "seed": seed, "steps": "120"}
            rows.append({**base, "metric": "exact_match", "family": "kv", "value": str(value)})
    (got,) = report.headline_suite(rows, "s.csv", "dense", metrics=("exact_match",))
    assert (round(got.lemo, 6), round(got.base, 6)) == (0.55, 0.65)
    assert "2 seeds" in got.against and "dense 4" not in got.against


def test_profile_csvs_render_as_their_own_tables():
    """The profile's CSV gives one line per profiled step with each op family's device time, lemo's selection
    included; the peak owners' CSV one line per owner."""
    table = _reporting("tables").table
    base = {"config": "c", "seq_len": "32768", "commit": "x", "gpu": "G", "command": "p"}
    step = {"family": "step", "ms": "", "share": "", "step_ms": "100", "idle_ms": "2", "idle_share": "0.02"}
    rows = [
        {**base, **step, "gaps": "3", "launches": "9", "host_syncs": "1"},
        {**base, "family": "matmul", "ms": "60", "share": "0.6", "step_ms": "", "idle_share": ""},
        {**base, "family": "lemo::select", "ms": "1", "share": "0.01", "step_ms": "", "idle_share": ""},
    ]
    lines = table(rows).splitlines()
    assert lines[0].split(" | ")[7:9] == ["matmul", "lemo::select"]  # largest family first
    assert "| 32K | c | 100 | 2.0% (2 ms) | 3 | 9 | 1 | 60 (60.0%) | 1 (1.0%) | x |" in lines
    owners = [{**base, "rank": "1", "owner": "peft/x.py:1 f", "gib": "2", "share": "0.5", "count": "4"}]
    assert "| 32K | c | 1 | `peft/x.py:1 f` | 2.00 | 50% | 4 |" in table(owners)


def test_selection_bias_per_family_is_a_table_of_families():
    """`suite_bias.py --by-family` rows: one column per family with its evidence blocks in the header, each the
    mean over the layers, and the filler of the "all" rows."""
    table = _reporting("tables").table
    common = {"selector": "s", "form": "sup", "kept_filler": "0.3", "rows": "2", "seq_len": "8192"}
    rows = [
        {**common, "layer": layer, "family": family, "kept_evidence": str(value), "evidence_blocks": blocks}
        for layer, scale in (("14", 1.0), ("15", 0.5))
        for family, value, blocks in (("all", 0.8 * scale, "10"), ("recall", 0.4 * scale, "4"))
    ]
    lines = [line for line in table(rows).splitlines() if line.startswith("| ")]
    assert [c.strip() for c in lines[0].split("|")][3:5] == ["all (10)", "recall (4)"]
    assert [c.strip() for c in lines[1].split("|")][3:6] == ["0.60", "0.30", "0.30"]


def test_suite_runs_trained_at_several_lengths_are_tabled_at_their_own():
    """suite_v14_lengths_smollm2.csv: runs trained at 4K and 16K, the 16K run also scored at 4K. The own-length
    table reads each run at its training length only, with the length as a column; the suite table reads 16K."""
    quality_tables = _reporting("quality_tables")
    suite_own_length_table, suite_table = quality_tables.suite_own_length_table, quality_tables.suite_table
    base = {"form": "sup", "steps": "60", "seed": "0", "metric": "exact_match", "family": "count"}
    rows = [
        {**base, "config": "dense:t4K", "seq_len": "4096", "eval_len": "4096", "value": "0.5"},
        {**base, "config": "dense:t16K", "seq_len": "16384", "eval_len": "16384", "value": "0.2"},
        {
            **base,
            "config": "dense:t16K",
            "seq_len": "16384",
            "eval_len": "4096",
            "value": "0.9",
        },  # not its own
    ]
    own = [line.split(" | ") for line in suite_own_length_table(rows).splitlines()[2:]]
    assert [(r[0], r[2], r[10]) for r in own] == [
        ("| dense:t4K", "4K", "0.50"),
        ("| dense:t16K", "16K", "0.20"),
    ]
    at16 = suite_table(rows).splitlines()[2:]
    assert len(at16) == 1 and at16[0].startswith("| dense:t16K | sup | 60 | 1 |")
