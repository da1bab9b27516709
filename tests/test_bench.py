"""Every bench script starts and prints its table at a tiny size, so that a bench never breaks
silently (bench/metrics_scale.py once died in its first table for months).

Each script runs as a user runs it, `python bench/NAME.py ARGS`, in a process of its own, with the
tiny-size arguments below; the test checks its exit status and a line of its table. A new script
in bench/ needs an entry here (test_every_bench_script_has_a_smoke_test); a helper module it
imports does not. Timings printed here are meaningless: the point is that the code path still runs
end to end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def card_copy(tmp: Path) -> Path:
    """A copy of the model card, so that ablation_card.py fills the copy's section, not the shipped one."""
    return Path(shutil.copy(ROOT / "checkpoints" / "MODEL_CARD.md", tmp / "MODEL_CARD.md"))


# script -> (arguments, given the test's temporary folder; a regular expression its output must match)
SMOKE = {
    "ablation_card.py": (lambda tmp: ["--run", str(tmp / "run"), "--out", str(tmp / "ABLATION.md"),
                                      "--card", str(card_copy(tmp)), "--tiny"], r"wrote .*ABLATION\.md"),
    "ablate_replay.py": (lambda tmp: ["--tiny"], r"prefix replayed"),
    "amp_gates.py": (lambda tmp: ["--limit", "40", "--batch", "40"], r"SE_4_3"),
    "channel_ablate.py": (lambda tmp: ["--tiny"], r"interv\.x img/s"),
    "collect_overhead.py": (lambda tmp: ["--smoke"], r"timed overhead"),
    "control_cost.py": (lambda tmp: ["--tiny"], r"pass: one control, 50 images"),
    "dashboard_scale.py": (lambda tmp: ["--runs", str(tmp / "runs"), "--tiny"], r"after the first load"),
    "gpu_throughput.py": (lambda tmp: ["--models", "se_resnet20", "--batches", "1", "--repeats", "1"], r"collect"),
    "jpeg_pipeline.py": (lambda tmp: [str(jpeg_folder(tmp)), "--device", "cpu", "--model", "timm:seresnet18",
                                      "--limit", "4", "--batch", "2", "--size", "32", "--workers", "0",
                                      "--read-workers", "0", "--repeats", "1"], r"decode \+ preprocess"),
    "make_jpeg_folder.py": (lambda tmp: [str(tmp / "jpegs"), "--classes", "2", "--per-class", "2",
                                         "--size", "40x30", "--jobs", "1"], r"4 JPEGs in 2 classes"),
    "metrics_scale.py": (lambda tmp: ["--tiny"], r"peak RSS GiB"),
    "shape_normalisation.py": (lambda tmp: ["--tiny"], r"onset with gate SD"),
    "stats_memory.py": (lambda tmp: ["--classes", "10", "--permutations", "9", "--allocate"], r"allocated z: [\d.]+ MiB"),
    "report_time.py": (lambda tmp: [str(collected_run(tmp)), "--repeats", "1"], r"reports of 1 run"),
    "stats_kernels.py": (lambda tmp: ["--classes", "10", "--batch", "8"], r"operations per batch: \d+"),
    "traced_gates.py": (lambda tmp: ["--model", "timm:seresnet18", "--size", "32", "--batch", "2", "--batches", "1",
                                     "--repeats", "1"], r"ratio to plain"),
    "validate_notions.py": (lambda tmp: ["--tiny"], r"image bootstrap: 10 resamples"),
}
NEEDS_FASHION_MNIST = {"ablate_replay.py", "ablation_card.py", "amp_gates.py", "control_cost.py", "validate_notions.py"}


def run_script(name: str, args: list[str]) -> str:
    """stdout of `python bench/NAME ARGS` run from the repository root; its output in the error."""
    done = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"bench/{name} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def jpeg_folder(tmp: Path) -> Path:
    """A tiny ImageNet-style folder written by bench/make_jpeg_folder.py itself."""
    out = tmp / "jpegs"
    run_script("make_jpeg_folder.py", [str(out), "--classes", "2", "--per-class", "2", "--size", "40x30", "--jobs", "1"])
    return out


def collected_run(tmp: Path) -> Path:
    """A run folder of a small random-weight model on synthetic images, made by `se-analysis collect`."""
    out = tmp / "run"
    done = subprocess.run([sys.executable, "-m", "analysis", "collect", "--model", "se_resnet20", "--random-init",
                           "--data", "synthetic:classes=3,n=48,size=16,channels=1", "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_every_bench_script_has_a_smoke_test() -> None:
    """A script is a file of bench/ that runs as a program; a module it imports (bench/op_parts.py) is not."""
    scripts = [p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    assert sorted(scripts) == sorted(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_bench_script_runs_at_a_tiny_size_and_prints_its_table(name: str, tmp_path: Path) -> None:
    if name in NEEDS_FASHION_MNIST and not FASHION_MNIST.is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    arguments, table = SMOKE[name]
    out = run_script(name, arguments(tmp_path))
    assert re.search(table, out), f"bench/{name} printed no table:\n{out[-2000:]}"


def test_the_gpu_session_names_only_scripts_and_tests_that_exist() -> None:
    """bench/gpu_session.sh needs a CUDA machine; here: its shell parses, and every bench script and
    test file it runs exists (a moved test file made it run nothing, silently)."""
    script = BENCH / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    named = re.findall(r"\b((?:bench|tests)/[\w/]+\.py)\b", script.read_text())
    assert named and [path for path in named if not (ROOT / path).is_file()] == []
