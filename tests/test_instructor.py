"""The instructor's nbgrader flow end to end, as the README describes it (issue 22): generate and release an
assignment through an exchange, four students fetch and submit (one solves it, one hands in the released version,
one switches the checks off, one calls the library's own reference), then collect, autograde, feedback and a CSV of
the grades. The course's config holds no absolute path and carries the 120 s output wait. And a learner's edited
notebook survives `make assignments` run again."""
import csv, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from vae_course.assignments import release, assignment_source, course_nbs, _nbg

ROOT = Path(__file__).resolve().parent.parent
NBGRADER = str(Path(sys.executable).parent / "nbgrader")
CH = "02_blocks"

def _nbg_run(args, cwd, user="instructor", exchange=None):
    env = {**os.environ, "USER": user, "LOGNAME": user, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [NBGRADER, *args, "--CourseDirectory.course_id=vae_course"] + ([f"--Exchange.root={exchange}"] if exchange else [])
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nbgrader {' '.join(args)} as {user}: {r.stderr[-3000:]}"
    return r

def _solve(nb: dict, exercise: str, src: str) -> dict:
    "Notebook `nb` with the solution cell of `exercise` replaced by `src`."
    cell = next(c for c in nb["cells"] if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))
    cell["source"] = src.splitlines(keepends=True)
    return nb

def _source_cell(exercise: str) -> str:
    cells = assignment_source(course_nbs() / f"{CH}.ipynb")["cells"]
    return "".join(next(c for c in cells if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))["source"])

CHEAT = ("test_eq = test_close = test_fail = lambda *a, **k: None      # every check passes now, or so it seems\n"
         "class ConvNormAct(nn.Sequential):\n    def __init__(self, in_ch, out_ch, k=3, stride=1, act=True): super().__init__(nn.Identity())")
BORROWED = "from vae_course.blocks import ConvNormAct"

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("flow")
    made = base / "made"; release(made, [CH])                              # `make assignments`, for this chapter
    course = base / "course"; course.mkdir()                               # the instructor's own course: source/ and the config
    shutil.copytree(made / "source", course / "source"); shutil.copy(made / "nbgrader_config.py", course)
    exchange = base / "exchange"; exchange.mkdir(); os.chmod(exchange, 0o777)
    _nbg_run(["generate_assignment", CH], course)
    _nbg_run(["release_assignment", CH], course, exchange=exchange)
    students = dict(alice=lambda nb: _solve(_solve(nb, "conv_norm_act", _source_cell("conv_norm_act")), "squeeze_excite", _source_cell("squeeze_excite")),
                    bob=lambda nb: nb,
                    carol=lambda nb: _solve(nb, "conv_norm_act", CHEAT),
                    dave=lambda nb: _solve(_solve(nb, "conv_norm_act", BORROWED), "squeeze_excite", _source_cell("squeeze_excite")))
    for who, work in students.items():
        home = base / who; home.mkdir()
        _nbg_run(["fetch_assignment", CH], home, who, exchange)
        f = home / CH / f"{CH}.ipynb"
        f.write_text(json.dumps(work(json.loads(f.read_text()))))
        _nbg_run(["submit", CH, f"--student={who}"], home, who, exchange)   # as the user `who` would (all users are one here)
    _nbg_run(["collect", CH], course, exchange=exchange)
    _nbg_run(["autograde", CH], course)
    _nbg_run(["generate_feedback", CH], course)
    _nbg_run(["export", "--to=grades.csv"], course)
    return course

def test_the_grades_tell_right_from_wrong(graded):
    scores = {r["student_id"]: float(r["score"]) for r in csv.DictReader(open(graded / "grades.csv"))}
    assert scores == dict(alice=3.0, bob=0.0, carol=0.0, dave=2.0), scores

def test_feedback_names_what_failed(graded):
    fb = lambda who: (graded / "feedback" / who / CH / f"{CH}.html").read_text()
    assert "uses the library&#39;s own vae_course.blocks.ConvNormAct" in fb("dave") or "uses the library's own vae_course.blocks.ConvNormAct" in fb("dave")
    assert "NotImplementedError" in fb("bob")

def test_the_config_travels_without_absolute_paths(graded):
    text = (graded / "nbgrader_config.py").read_text()
    assert "/tmp" not in text and str(ROOT) not in text and "iopub_timeout = 120" in text

def test_release_again_keeps_a_learners_work(tmp_path):
    course = tmp_path / "assignments"
    nb = release(course, ["05_vae"])[0]
    mine = json.loads(nb.read_text()); mine["cells"].append(dict(cell_type="markdown", metadata={}, source=["my notes"])); nb.write_text(json.dumps(mine))
    assert release(course, ["05_vae"])[0] == nb
    assert json.loads(nb.read_text())["cells"][-1]["source"] == ["my notes"], "make assignments overwrote the learner's notebook"
    assert (nb.parent / "05_vae.fresh.ipynb").is_file()
    fresh = release(course, ["06_kl"])[0]; before = fresh.read_bytes()                  # an untouched release is simply renewed
    assert release(course, ["06_kl"])[0].read_bytes() == before and not (fresh.parent / "06_kl.fresh.ipynb").exists()
