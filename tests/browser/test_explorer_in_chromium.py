"""The weights explorer in a real browser: JupyterLab on 127.0.0.1, notebook 03 at tiny settings, headless
Chromium driven by selenium. After each change of the method, side and popularity widgets, the figure the
kernel drew (SVG with its text as text) must name the new selection: a redraw alone proves nothing.

Run with ``make browser-test`` (Debian's chromium and chromium-driver, selenium from pip). The notebook is a
copy in a temporary folder, so no tracked file changes; the server is stopped whatever happens."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (make browser-test)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).parents[2]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", "/usr/bin/chromedriver"
TINY = {"max_interactions": 4000, "methods": ["fse", "sam", "autoemb"], "seeds": [0, 1], "min_samples": 50}
TITLE = re.compile(r"(AutoEmb|SAM|DARTS), (users|items) with popularity ([\d,]+)-([\d,]+), stream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a parameterized copy of notebook 03; its URL and token."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver (as .ci/run does)")
    nb = nbformat.read(ROOT / "notebooks" / "03_popularity.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    given = {**TINY, "results_dir": str(tmp_path / "results")}
    cell.source += "\n" + "\n".join(f"{k} = {v!r}  # the browser test's" for k, v in given.items())
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(nb, notebooks / "03_popularity.ipynb")
    port, token = free_port(), "browser-test"
    env = dict(os.environ, OMP_NUM_THREADS="1", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--notebook-dir={notebooks}", "--allow-root", "--expose-app-in-browser",
         "--ServerApp.port_retries=0"],
        cwd=tmp_path, env=env, stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as answer:
                    json.load(answer)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail("JupyterLab stopped: " + (tmp_path / "server.log").read_text()[-2000:])
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s: " + (tmp_path / "server.log").read_text()[-2000:])
        yield url, token, tmp_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert server.poll() is not None, "the server is still running"


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def accept_dialogs(driver) -> None:
    """Where JupyterLab asks which kernel to start ("Select Kernel"), take the preselected one: the notebook's."""
    for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
        button.click()


def kernel_ready(driver) -> bool:
    accept_dialogs(driver)
    return not driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog") and bool(
        driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"))


def run_all_cells(driver, wait) -> None:
    """JupyterLab's own "Run All Cells" command (the Run menu's), through the app the server exposes, once the
    notebook is the active document (a click on it makes it so)."""
    def enabled(d):
        d.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell").click()
        return d.execute_script("return !!(window.jupyterapp && "
                                "window.jupyterapp.commands.isEnabled('notebook:run-all-cells'))")
    wait.until(enabled)
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def drawn_title(driver) -> str:
    """The title of the explorer's current figure, read from the SVG the kernel drew (JupyterLab shows it as an
    image whose source is the SVG document)."""
    sources = driver.execute_script(
        "return Array.from(document.querySelectorAll('.autoemb-explorer img')).map(i => i.src);")
    for source in sources:
        header, _, body = source.partition(",")
        if header.startswith("data:image/svg+xml"):
            svg = base64.b64decode(body).decode() if header.endswith(";base64") else urllib.parse.unquote(body)
            for text in re.findall(r"<text[^>]*>([^<]*)</text>", svg):
                if TITLE.search(html.unescape(text)):
                    return html.unescape(text)
    return ""


def wait_for_title(wait, driver, method: str, side: str, low: int | None = None, high: int | None = None) -> str:
    def shows(d):
        accept_dialogs(d)
        match = TITLE.search(drawn_title(d))
        if not match or match.group(1) != method or match.group(2) != side:
            return False
        got = tuple(int(x.replace(",", "")) for x in match.group(3, 4))
        return match.group(0) if low is None or got == (low, high) else False
    return wait.until(shows)


def slider_range(driver) -> tuple[int, int]:
    """The popularity slider's readout, "lo – hi", as numbers."""
    box = driver.find_element(By.CSS_SELECTOR, ".autoemb-popularity")
    readout = box.find_element(By.CSS_SELECTOR, ".widget-readout").text
    low, high = re.findall(r"[\d,]+", readout)
    return int(low.replace(",", "")), int(high.replace(",", ""))


def test_the_explorer_redraws_the_chosen_selection_in_chromium(lab, browser):
    url, token, folder = lab
    before = git_status()
    shots = Path(os.environ.get("AUTOEMB_BROWSER_SHOTS", ROOT / "results" / "browser-test"))
    shots.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, float(os.environ.get("AUTOEMB_BROWSER_WAIT", 240)), poll_frequency=0.5,
                         ignored_exceptions=(WebDriverException,))
    step = "open the notebook"
    try:
        browser.get(f"{url}/lab/tree/03_popularity.ipynb?token={token}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".jp-Notebook"))
        wait.until(kernel_ready)
        step = "run all cells"
        run_all_cells(browser, wait)

        step = "the first drawing"
        first = wait_for_title(wait, browser, "AutoEmb", "users")
        assert "AutoEmb, users with popularity 0-" in first

        step = "method: SAM"
        Select(browser.find_element(By.CSS_SELECTOR, ".autoemb-method select")).select_by_visible_text("SAM")
        wait_for_title(wait, browser, "SAM", "users")

        step = "ids: items"
        browser.find_element(By.XPATH, "//div[contains(@class,'autoemb-side')]//button[normalize-space()='items']").click()
        wait_for_title(wait, browser, "SAM", "items")

        step = "popularity range"
        handles = browser.find_elements(By.CSS_SELECTOR, ".autoemb-popularity .noUi-handle")
        start = slider_range(browser)
        handles[-1].send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)  # the upper end, two stops down
        handles[0].send_keys(Keys.ARROW_RIGHT)  # the lower end, one stop up
        wait.until(lambda d: slider_range(d) != start)
        low, high = slider_range(browser)
        assert start[0] < low < high < start[1], (start, low, high)
        title = wait_for_title(wait, browser, "SAM", "items", low, high)
    except Exception:
        browser.save_screenshot(str(shots / "failed.png"))
        print("page:", browser.execute_script("return [typeof window.jupyterapp, !!(window.jupyterapp && "
                                               "window.jupyterapp.shell.currentWidget), location.href]"))
        print(f"failed at: {step}; screenshot {shots / 'failed.png'}; server log:\n"
              + (folder / "server.log").read_text()[-3000:])
        raise
    browser.save_screenshot(str(shots / "explorer.png"))
    print(f"drawn: {title}; screenshot: {shots / 'explorer.png'}")
    assert git_status() == before, "the browser test changed tracked files"
