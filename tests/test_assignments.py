"""The exercises both ways, through nbgrader: the student versions hold stubs and no solution or hidden test;
graded as released every exercise scores zero (no check is vacuous); the complete chapters score full marks; and a
chapter with one exercise stubbed loses exactly that exercise's points while the rest of it still runs."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest
from vae_course.assignments import exercise_chapters, exercises, release, assignment_source, _RUNNER, _scores, _nbg, course_nbs

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

def stub_exercise(nb: dict, exercise: str) -> dict:
    "A copy of notebook `nb` with the solution of `exercise` replaced by the stub nbgrader writes."
    cell = next(c for c in nb["cells"] if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))
    src = "".join(cell["source"])
    out = re.sub(r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION", lambda m: m[1] + STUB.replace("\n", "\n" + m[1]),
                 src, flags=re.S | re.M)
    assert out != src
    cell["source"] = out.splitlines(keepends=True)
    return nb

PARTIAL = ("02_blocks", "12_vqgan")          # chapters graded once more with their first exercise stubbed (fast ones)
GRADED = ("02_blocks", "06_kl", "12_vqgan")   # graded through nbgrader here; tests/test_exercises.py grades every exercise's
                                              # cell in-process (released stub 0, the chapter's solution full, mistakes 0)

def _autograde_in_background(course: Path, calls: list) -> subprocess.Popen:
    "The grading process, with a PATH that lacks this environment's bin/ (as when the venv is not activated)."
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-c", _RUNNER, str(course), json.dumps(calls)], cwd=course, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every chapter released, then graded as released, complete, and (two chapters) with one exercise stubbed.
    The chapters are split over two nbgrader courses graded side by side, one per CPU core."""
    chapters = exercise_chapters()
    by_size = sorted(chapters, key=lambda c: -c.stat().st_size)
    groups = [by_size[0::2], by_size[1::2]]
    courses = [tmp_path_factory.mktemp(f"course{i}") for i in range(2)]
    course_of, students, procs = {}, {}, []
    for course, group in zip(courses, groups):
        calls = []
        for ch, st in zip(group, release(course, [c.stem for c in group])):
            course_of[ch.stem], students[ch.stem] = course, st
            if ch.stem not in GRADED: continue
            # a learner submits the released notebook filled in: the chapter without its slow (nbdev-only) cells
            subs = {"released": json.loads(st.read_text()), "complete": assignment_source(ch)}
            if ch.stem in PARTIAL: subs["one_stubbed"] = stub_exercise(assignment_source(ch), exercises(ch)[0]["exercise"])
            for who, nb in subs.items():
                dest = course / "submitted" / who / ch.stem / ch.name
                dest.parent.mkdir(parents=True, exist_ok=True); dest.write_text(json.dumps(nb))
                calls.append(("autograde", [ch.stem, who]))
        procs.append(_autograde_in_background(course, calls))
    for p in procs:
        err = p.communicate()[1]
        assert p.returncode == 0, err[-3000:]
    return course_of, chapters, [students[c.stem] for c in chapters]

def test_at_least_twelve_exercises_cover_the_course():
    ids = [e["exercise"] for c in exercise_chapters() for e in exercises(c)]
    assert len(ids) >= 12 and len(set(ids)) == len(ids)
    for topic in ("conv_norm_act", "encoder_heads", "decoder", "reparameterize", "kl_normal", "bits_per_dim", "perceptual",
                  "nearest_code", "straight_through", "ema_update", "hinge_losses", "adaptive_gan_weight", "accumulation_step"):
        assert topic in ids, topic

def test_student_versions_hold_stubs_and_no_solutions(graded):
    _, chapters, students = graded
    for ch, st in zip(chapters, students):
        text = st.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, ch.stem
        cells = json.loads(text)["cells"]
        sols = [c for c in cells if _nbg(c).get("solution")]
        assert len(sols) == len(exercises(ch)) and all("raise NotImplementedError()" in "".join(c["source"]) for c in sols), ch.stem
        assert not any("import nbdev;" in "".join(c["source"]) for c in cells)

def test_released_versions_score_zero_on_every_exercise(graded):
    course_of, chapters, _ = graded
    for ch in (c for c in chapters if c.stem in GRADED):
        rows = _scores(course_of[ch.stem], ch.stem, "released")
        assert [r["exercise"] for r in rows] == [e["exercise"] for e in exercises(ch)]
        assert all(r["score"] == 0 for r in rows), (ch.stem, rows)

def test_complete_chapters_score_full_marks(graded):
    course_of, chapters, _ = graded
    for ch in (c for c in chapters if c.stem in GRADED):
        rows = _scores(course_of[ch.stem], ch.stem, "complete")
        assert all(r["score"] == r["points"] > 0 for r in rows), (ch.stem, rows)

def test_one_stubbed_exercise_loses_exactly_its_points(graded):
    course_of, _, _ = graded
    for chapter in PARTIAL:
        stubbed = exercises(course_nbs() / f"{chapter}.ipynb")[0]["exercise"]
        rows = _scores(course_of[chapter], chapter, "one_stubbed")
        assert len(rows) > 1
        assert {r["exercise"]: r["score"] == 0 for r in rows} == {r["exercise"]: r["exercise"] == stubbed for r in rows}, rows

def test_grade_command_prints_a_score_per_exercise(graded, capsys):
    from vae_course.assignments import main
    course = graded[0]["06_kl"]
    assert main(["grade", str(course_nbs() / "06_kl.ipynb"), "--course", str(course), "--student", "cli"]) == 0
    out = capsys.readouterr().out
    assert "kl_normal" in out and re.search(r"total\s+2 / 2", out), out
    assert main(["release", "99_nope", "--course", str(course)]) == 2
    assert "is not a chapter with exercises" in capsys.readouterr().err
