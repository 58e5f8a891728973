"""The library's shape, as the course promises it: one idea per module (no module over 500 lines), imports that run
down the chapter order only (no cycle, no edge to a later chapter), methods in their class or added with fastcore's
`@patch` (never `Cls.name = _function`), no private name of one module used by another, and export cells a reader
can take in (at most 60 lines each)."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB, NBS = ROOT / "vae_course", ROOT / "nbs"
MODULES = sorted(p for p in LIB.glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))

def chapter_of(module: Path) -> str:
    "The notebook a module is exported from (its header says so), e.g. '13d_training'."
    m = re.search(r"File to edit: \.\./nbs/([^ ]+)\.ipynb", module.read_text())
    assert m, f"{module.name} does not say which notebook it is exported from"
    return m.group(1)

def imports_of(module: Path) -> set[str]:
    "The vae_course modules `module` imports, at the top or inside functions."
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split(".")[0])
            elif node.level == 1: out |= {a.name for a in node.names}
            elif node.module and node.module.startswith("vae_course."): out.add(node.module.split(".")[1])
            elif node.module == "vae_course": out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("vae_course.")}
    return out - {"_modidx", module.stem}

@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_is_at_most_500_lines(module):
    n = len(module.read_text().splitlines())
    assert n <= 500, f"{module.name} has {n} lines: split it along its seams into modules of one idea each (chapter order kept)"

def test_imports_run_down_the_chapter_order():
    order = {m.stem: chapter_of(m) for m in MODULES}
    upward = [f"{m} ({order[m]}) imports {i} ({order[i]})" for m in order for i in imports_of(LIB / f"{m}.py")
              if i in order and order[i] >= order[m]]
    assert not upward, "imports against the chapter order (or a cycle):\n" + "\n".join(upward)

def test_the_graph_check_sees_a_back_arrow(tmp_path):
    "The check above can fail: a lazy import of a later module inside a function is found."
    f = tmp_path / "kl.py"
    f.write_text("# File to edit: ../nbs/06_kl.ipynb\ndef g():\n    from vae_course.recipes import load_recipe\n")
    assert "recipes" in imports_of(f)

@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_method_attached_by_hand(module):
    hits = re.findall(r"^([A-Z]\w*)\.(\w+) = (?:property\()?_\w+", module.read_text(), re.M)
    assert not hits, f"{module.name}: {hits}: define methods in the class body or with @patch"

@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_private_name_from_another_module(module):
    tree = ast.parse(module.read_text())
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module != "__future__"
               and (n.level or (n.module or "").startswith("vae_course")) for a in n.names if a.name.startswith("_")]
    assert not private, f"{module.name} imports private names {private}: make them public where they are defined, or keep them home"

CHAPTERS = sorted(NBS.glob("[0-9][0-9]*_*.ipynb"))

@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.name)
def test_export_cells_are_small(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    big = [(i, len("".join(c["source"]).splitlines())) for i, c in enumerate(cells) if "".join(c["source"]).startswith("#| export")
           and len("".join(c["source"]).splitlines()) > 60]
    assert not big, f"{nb.name}: export cells over 60 lines (code cell index, lines): {big}; split them with prose between"

def test_readme_module_table_matches_the_map():
    "The README's chapter table names every chapter notebook and the module it exports, in order."
    rows = re.findall(r"^\| `(\d\d\w*?)` \| `(\w+)` \|", (ROOT / "README.md").read_text(), re.M)
    want = [(nb.stem, re.search(r"#\| default_exp (\w+)", nb.read_text()).group(1)) for nb in CHAPTERS]
    assert rows == want, f"README chapter table {rows} differs from the notebooks {want}"
