"""How long `make test` takes, phase by phase, on this machine. Not a test: run it by hand.

    python bench/test_time.py                  # once, as CI runs it (after `make install`)
    python bench/test_time.py --cold --runs 3  # data/ caches moved aside first (a fresh clone's first run), 3 runs
    python bench/test_time.py --avx2           # as on a CPU without AVX-512 or AMX (see below)

`--avx2` stands in for the CPUs without native bf16 that learners also have: bf16 autocast off
(VAE_COURSE_CPU_BF16=0) and PyTorch's kernels held to AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2).
It is a stand-in, not that CPU: a real 2-core AMD EPYC with AVX2 only trained 1.45x slower than it and ran the
slowest chapters 1.8-2.0x slower (the calibration is in bench/README.md).

Each phase is the Makefile target `make test` runs, in its order; the median over runs is reported, with nbdev_test's
per-notebook seconds and pytest's slowest tests from the last run. Results go to bench/results/test_time_<label>.json.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("check-sync", "features", "nbtest", "pytest")          # `make test`, target by target
AVX2 = dict(VAE_COURSE_CPU_BF16="0", ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")

def run_phase(target: str, env: dict) -> tuple[float, str]:
    "Seconds `make target` took, and what it printed; stops the benchmark if the target fails."
    t = time.perf_counter()
    r = subprocess.run(["make", target], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"make {target} failed (exit {r.returncode}); its last lines:\n{(r.stdout + r.stderr)[-2000:]}")
    return time.perf_counter() - t, r.stdout + r.stderr

def notebook_seconds(out: str) -> dict:
    "nbdev_test --timing's lines ('08_metrics.ipynb: 57 secs') as {notebook: seconds}."
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+\.ipynb): (\d+) secs$", out, re.M)}

def slowest_tests(out: str) -> list:
    "pytest --durations' lines ('12.3s call tests/x.py::test_y') as [(seconds, phase, test)]."
    return [(float(m[1]), m[2], m[3]) for m in re.finditer(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", out, re.M)]

def caches_moved_aside() -> Path:
    "Move data/'s generated caches into a temporary folder (a fresh clone has none); `restore` puts them back."
    keep = Path(tempfile.mkdtemp(prefix="vae_course_data_"))
    for f in (ROOT / "data").iterdir():
        if f.name != "README.md": shutil.move(str(f), keep / f.name)
    return keep

def restore(keep: Path):
    "Put the caches back, leaving the ones this run made where a kept one does not replace them."
    for f in keep.iterdir():
        dest = ROOT / "data" / f.name
        if dest.exists(): shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        shutil.move(str(f), dest)
    keep.rmdir()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="how many times to run make test (median reported)")
    ap.add_argument("--cold", action="store_true", help="move data/'s caches aside first, as on a fresh clone")
    ap.add_argument("--avx2", action="store_true", help="bf16 off, kernels held to AVX2: a stand-in for CPUs without AVX-512/AMX")
    a = ap.parse_args(argv)
    if a.runs < 1: ap.error("--runs must be at least 1")
    if not (ROOT / ".venv" / ".installed-stamp").is_file(): sys.exit("run `make install` first: this times the tests, not the install")
    sys.path.insert(0, str(ROOT))
    from vae_course.hardware import cpu_summary, cpu_bf16_supported
    env = {**os.environ, **(AVX2 if a.avx2 else {})}
    label = "avx2_standin" if a.avx2 else ("bf16" if cpu_bf16_supported() else "no_bf16")
    runs, out = [], {}
    for i in range(a.runs):
        keep = caches_moved_aside() if a.cold else None
        try:
            row = {}
            for target in PHASES:
                row[target], out[target] = run_phase(target, env)
                print(f"run {i + 1}/{a.runs}: make {target} {row[target]:.0f} s", flush=True)
            row["total"] = sum(row[p] for p in PHASES)
            runs.append(row)
        finally:
            if keep: restore(keep)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    res = dict(machine=f"{cpu_summary()}, {os.cpu_count()} cores",
               avx2_standin=a.avx2, cold=a.cold, runs=runs, median_s=median,
               notebooks_s=notebook_seconds(out["nbtest"]), slowest_tests=slowest_tests(out["pytest"]))
    dest = ROOT / "bench" / "results" / f"test_time_{label}{'_cold' if a.cold else ''}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(res, indent=1))
    print(f"{res['machine']}{' (AVX2 stand-in)' if a.avx2 else ''}: make test {median['total'] / 60:.1f} min, median of {a.runs} "
          f"({', '.join(f'{p} {median[p]:.0f} s' for p in PHASES)}); details in {dest.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
