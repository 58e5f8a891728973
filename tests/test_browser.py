"""The latent explorer as a learner meets it (issue 24): JupyterLab in headless Chromium opens chapter 17 on a smoke
run, runs all its cells, and every control the browser shows is at its default; then moving the interpolation and
temperature sliders, a direction slider, the path and the prior/fitted toggle each changes the picture they drive.
Chromium and its driver come from Debian (`.ci/run` installs them where missing); without them the test is skipped."""
import json, os, shutil, socket, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium/chromedriver: apt-get install chromium chromium-driver")
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

def _port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _wait(cond, timeout=300, every=0.25, what="the page"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            v = cond()
            if v: return v
        except Exception: pass
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from vae_course.recipes import load_recipe, run_recipe
    base = tmp_path_factory.mktemp("lab")
    run = run_recipe(load_recipe("default", tier="smoke", steps=30, out_dir=str(base / "run")), log=lambda *a: None)
    nb = json.loads((ROOT / "nbs" / "17_explore.ipynb").read_text())
    nb["cells"] = [c for c in nb["cells"] if "nbdev_export()" not in "".join(c["source"])]    # runs outside the project
    for c in nb["cells"]:
        src = "".join(c["source"])
        if src.startswith("checkpoint = None"): c["source"] = [src.replace("checkpoint = None", f"checkpoint = {str(run)!r}", 1)]
    (base / "nb").mkdir(); (base / "nb" / "17_explore.ipynb").write_text(json.dumps(nb))
    port, token = _port(), "vae-course-test"
    env = {**os.environ, "HOME": str(base / "home"), "JUPYTER_CONFIG_DIR": str(base / "jcfg"), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                               f"--ServerApp.token={token}", f"--ServerApp.root_dir={base / 'nb'}", "--LabApp.expose_app_in_browser=True",
                               "--allow-root", f"--LabApp.workspaces_dir={base / 'ws'}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opts = webdriver.ChromeOptions(); opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1500,1100",
              f"--user-data-dir={base / 'chrome'}"): opts.add_argument(a)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    try:
        _wait(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 60, what="the Jupyter server")
        driver.get(f"http://127.0.0.1:{port}/lab/tree/17_explore.ipynb?token={token}")
        js = driver.execute_script
        _wait(lambda: js("const w = window.jupyterapp && jupyterapp.shell.currentWidget; return !!(w && w.sessionContext && "
                         "w.sessionContext.session && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle')"),
              what="the notebook and its kernel")
        js("jupyterapp.commands.execute('notebook:run-all-cells')")
        _wait(lambda: js("const w = jupyterapp.shell.currentWidget; const cells = w.content.widgets.filter(c => c.model.type === 'code');"
                         "return w.sessionContext.session.kernel.status === 'idle' && cells.every(c => c.model.executionCount !== null)"),
              timeout=600, every=1, what="Run All to finish")
        errors = js("return jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code')"
                    ".flatMap(c => c.model.outputs.toJSON()).filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)")
        assert not errors, errors
        yield driver
    finally:
        driver.quit(); server.terminate(); server.wait(30)

def _explorer(driver):
    return _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".jupyter-widgets.widget-tab")[0], what="the explorer widget")

def _panel(driver, title):
    "Click the explorer's tab `title` and return its visible panel."
    ex = _explorer(driver)
    next(t for t in ex.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab") if t.text.strip() == title).click()
    return _wait(lambda: next(p for p in ex.find_elements(By.CSS_SELECTOR, ".widget-tab-contents > .lm-Widget, .widget-tab-contents > div")
                              if p.is_displayed()), what=f"the {title} tab")

def _slider(panel, label):
    return next(s for s in panel.find_elements(By.CSS_SELECTOR, ".widget-slider") if label in s.find_element(By.CSS_SELECTOR, ".widget-label").text)

def _readout(slider): return slider.find_element(By.CSS_SELECTOR, ".widget-readout").text.strip()

def _image(panel): return panel.find_element(By.CSS_SELECTOR, "img").get_attribute("src")

def _changes(driver, panel, act, what):
    before = _image(panel); act()
    _wait(lambda: _image(panel) != before, 60, what=f"the picture to change after {what}")

def test_after_run_all_the_browser_shows_the_defaults(lab):
    p = _panel(lab, "interpolate")
    assert [_readout(_slider(p, "image A")), _readout(_slider(p, "image B"))] == ["0", "1"]
    assert [b.text for b in p.find_elements(By.CSS_SELECTOR, "button.mod-active")] == ["linear"]
    p = _panel(lab, "temperature")
    assert (_readout(_slider(p, "temperature")), _readout(_slider(p, "seed"))) == ("1.00", "0")
    assert [b.text for b in p.find_elements(By.CSS_SELECTOR, "button.mod-active")] == ["learned prior"]
    p = _panel(lab, "directions")
    assert {_readout(s) for s in p.find_elements(By.CSS_SELECTOR, ".widget-slider")} == {"0.00"}

def test_every_control_changes_its_picture(lab):
    p = _panel(lab, "interpolate")
    _changes(lab, p, lambda: _slider(p, "image B").find_element(By.CSS_SELECTOR, ".noUi-handle").send_keys(Keys.ARROW_RIGHT), "image B")
    _changes(lab, p, lambda: next(b for b in p.find_elements(By.CSS_SELECTOR, "button") if b.text == "slerp").click(), "slerp")
    p = _panel(lab, "temperature")
    _changes(lab, p, lambda: _slider(p, "temperature").find_element(By.CSS_SELECTOR, ".noUi-handle").send_keys(Keys.ARROW_LEFT), "temperature")
    for source in ("fitted Gaussian", "prior N(0, I)"):
        _changes(lab, p, lambda: next(b for b in p.find_elements(By.CSS_SELECTOR, "button") if b.text == source).click(), source)
    p = _panel(lab, "directions")
    _changes(lab, p, lambda: p.find_elements(By.CSS_SELECTOR, ".noUi-handle")[0].send_keys(Keys.ARROW_RIGHT), "a direction")
