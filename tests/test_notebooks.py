"""The training notebooks under papermill: a bad parameter name or value stops the run in the cell right after the
parameters with a message naming it, and the batch runner executes a notebook over two tiers and summarises them."""
import json
from pathlib import Path
import pytest

pm = pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "nbs" / "train_vae.ipynb"

def _fail(tmp_path, **parameters):
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB), str(out), parameters=parameters, cwd=str(tmp_path), progress_bar=False,
                            log_output=False)
    cells = json.loads(out.read_text())["cells"]
    failed = [c for c in cells if c["cell_type"] == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "notebook_params(" in "".join(failed[0]["source"]), "the validation cell must be the one that fails"
    ran = [c for c in cells if c["cell_type"] == "code" and c.get("execution_count")]
    assert "run_recipe(params)" not in "".join(ran[-1]["source"])           # nothing after it ran
    return e.value

def test_parameters_cell_is_tagged():
    assert {"recipe", "tier", "data_source", "data_path", "image_size", "epochs", "steps", "time_budget_min", "seed",
            "out_dir", "device", "pretrained"} <= set(pm.inspect_notebook(str(NB)))

def test_unknown_parameter_fails_first(tmp_path):
    e = _fail(tmp_path, lerning_rate=1e-4)
    assert "lerning_rate" in e.evalue and "did you mean 'lr'" in e.evalue

def test_bad_value_fails_first(tmp_path):
    e = _fail(tmp_path, image_size=-3)
    assert "parameter 'image_size'" in e.evalue and "integer" in e.evalue

def test_batch_over_two_tiers(tmp_path):
    "run_batch over the smoke tier and the CPU tier (shortened by parameters): two complete runs and a summary."
    from vae_course.batch import run_batch
    out = tmp_path / "batch"
    runs = run_batch(NB, out, tiers=["smoke", "cpu"], recipes=["default"],
                     parameters=dict(steps=3, image_size=32, batch_size=8, time_budget_min=1.0, pretrained=False, latent_prior_steps=20), log=lambda *a: None)
    assert [r.status for r in runs] == ["complete", "complete"], [r.error for r in runs]
    for r in runs:
        assert (r.out_dir / "train_vae.ipynb").is_file() and (r.out_dir / "recon.png").is_file()
        assert r.metrics["step"] == 3 and r.metrics["tier"] == r.name.split("_")[-1]
    table = (out / "summary.md").read_text()
    assert "default_smoke" in table and "default_cpu" in table and "val_psnr" in table
    assert (out / "summary.png").is_file()
    again = run_batch(NB, out, tiers=["smoke", "cpu"], recipes=["default"],
                      parameters=dict(steps=3, image_size=32, batch_size=8, time_budget_min=1.0, pretrained=False, latent_prior_steps=20), log=lambda *a: None)
    assert [r.status for r in again] == ["skipped", "skipped"]

def test_explorer_widgets_respond(shared_run):
    "The latent explorer over a run's model (a shared smoke run; chapter 17 trains its own): moving each control changes the picture it drives."
    from vae_course.explore import load_explorer_model, LatentExplorer
    model, images, samplers = load_explorer_model(shared_run("default", 3)[0])
    assert list(samplers) == ["fitted Gaussian", "learned prior"], "a run saves both fitted samplers, and the explorer finds them"
    assert samplers["learned prior"].kind == "ar" and samplers["learned prior"].dim == model.cfg.latent_dim
    ex = LatentExplorer(model, images[:16], k=3, samplers=samplers)
    assert ex.source.value == "learned prior"
    for control, value, view in [(ex.b, 7, "interp_view"), (ex.mode, "slerp", "interp_view"),
                                 (ex.temperature, 0.4, "sample_view"), (ex.seed, 3, "sample_view"),
                                 (ex.source, "fitted Gaussian", "sample_view"), (ex.source, "prior N(0, I)", "sample_view"),
                                 (ex.amounts[0], 2.5, "dir_view"), (ex.a, 4, "dir_view")]:
        before = bytes(getattr(ex, view).value)
        control.value = value
        assert bytes(getattr(ex, view).value) != before, (control.description, view)
    with pytest.raises(ValueError, match="needs a continuous VAE"): load_explorer_model(shared_run("anime_vq", 4)[0])

NOTEBOOKS = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_docs_processing_passes(name, tmp_path, monkeypatch):
    """nbdev's doc processing, offline and without Quarto (what `nbdev_docs` runs first, from the repository root):
    the show-doc processor executes every cell with an import, so such a cell must not need a cell it skips."""
    import warnings
    from nbdev.serve_drv import main as process
    from nbdev.processors import FilterDefaults
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        process((ROOT / "nbs" / name, tmp_path / name, FilterDefaults))
    assert (tmp_path / name).is_file()
    mixed = [str(x.message) for x in w if "imports and other code" in str(x.message)]
    if not name.startswith("train_"): assert not mixed, mixed[0][:500]

def test_explorer_finds_runs_from_nbs(monkeypatch):
    "JupyterLab's kernels run in nbs/, `make train` writes runs/ at the root: a relative run path works from both."
    from vae_course.explore import find_run
    monkeypatch.chdir(ROOT / "nbs")
    assert find_run("nbs/recipes") == ROOT / "nbs" / "recipes"          # not under nbs/, found under the root
    assert find_run("recipes") == Path("recipes")                        # under the working directory: as given
    with pytest.raises(FileNotFoundError, match="make train"): find_run("runs/no_such_run")

CHAPTERS = sorted(p.name for p in (ROOT / "nbs").glob("[0-9][0-9]*_*.ipynb"))

@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_is_committed_executed(name):
    "Every numbered chapter opens with its figures and numbers, without temporary paths that change every run."
    cells = json.loads((ROOT / "nbs" / name).read_text())["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs, f"{name} has no outputs: execute it top to bottom in a fresh kernel, then run nbdev_clean, and commit it"
    text = json.dumps(outputs)
    assert "/tmp/tmp" not in text and "0x7f" not in text, f"{name}: an output shows a temporary path or a memory address"
