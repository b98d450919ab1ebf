"""`ddrm serve` started on a free loopback port and exercised over real HTTP; the web page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ddrm.cli import main  # noqa: E402

CONFIG = (
    "data: {name: synthetic, synthetic: {n_users: 150, n_items: 80, mean_items: 10}}\n"
    "backend: {name: mf, dim: 16}\npretrain: {epochs: 4, eval_every: 4, batch_size: 256, lr: 0.01}\n"
    "ddrm: {steps: 5, dims: [32]}\ntrain: {epochs: 2, eval_every: 1, batch_size: 256}\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read().decode()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def _post(url: str, payload: dict | bytes) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    (root / "c.yaml").write_text(CONFIG)
    assert main(["train", "--config", str(root / "c.yaml"), "--output", str(root / "run"), "--quiet"]) == 0
    (root / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{i},Film {i},Drama\n" for i in range(80)))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ddrm", "serve", "--checkpoint", str(root / "run" / "ddrm.pt"),
                             "--items", str(root / "items.csv"), "--port", str(port), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ddrm serve exited: {proc.communicate()[1]}")
        try:
            if _get(base + "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("ddrm serve did not come up")
    yield {"base": base, "root": root}
    proc.terminate()
    proc.wait(timeout=30)


def test_health_and_openapi(server):
    code, h = _get(server["base"] + "/health")
    assert code == 200 and h["status"] == "ok" and h["model"] == "ddrm" and h["backend"] == "mf"
    assert h["n_users"] == 150 and h["n_items"] == 80 and len(h["fingerprint"]) == 16
    code, spec = _get(server["base"] + "/openapi.json")
    assert code == 200 and {"/health", "/users/{user_id}/recommendations", "/recommendations"} <= set(spec["paths"])


@pytest.mark.parametrize("model", ["ddrm", "backend"])
def test_user_recommendations_exclude_history_and_carry_titles(server, model):
    base = server["base"]
    code, r = _get(f"{base}/users/3/recommendations?k=7&model={model}")
    assert code == 200 and r["user_id"] == "3" and r["model"] == model
    assert [it["rank"] for it in r["items"]] == list(range(1, 8))
    scores = [it["score"] for it in r["items"]]
    assert scores == sorted(scores, reverse=True)
    _, hist = _get(f"{base}/users/3/history")
    seen = {it["item_id"] for it in hist["items"]}
    assert seen and not seen & {it["item_id"] for it in r["items"]}
    assert all(it["title"] == f"Film {it['item_id']}" and it["genres"] == "Drama" for it in r["items"])
    code, b = _post(f"{base}/recommendations", {"users": ["3", "5"], "k": 7, "model": model})
    assert code == 200 and b["results"][1]["user_id"] == "5"
    first = b["results"][0]["items"]  # batched = single (scores up to float rounding of the batched matmul)
    assert [it["item_id"] for it in first] == [it["item_id"] for it in r["items"]]
    assert [it["score"] for it in first] == pytest.approx(scores, rel=1e-5, abs=1e-6)


def test_new_user_given_by_history_is_folded_in(server):
    code, r = _post(server["base"] + "/recommendations", {"history": ["1", "2", "2", "10"], "k": 5})
    assert code == 200
    res = r["results"][0]
    assert res.get("user_id") is None and res["history_size"] == 3 and len(res["items"]) == 5
    assert not {"1", "2", "10"} & {it["item_id"] for it in res["items"]}


@pytest.mark.parametrize(("method", "path", "body", "code", "fragment"), [
    ("GET", "/users/nobody/recommendations", None, 404, "unknown user id 'nobody'"),
    ("GET", "/users/3/recommendations?k=0", None, 422, "k:"),
    ("GET", "/users/3/recommendations?k=1001", None, 422, "k:"),
    ("GET", "/users/3/recommendations?model=magic", None, 422, "model:"),
    ("GET", "/users/nobody/history", None, 404, "unknown user id"),
    ("POST", "/recommendations", {"history": ["1", "zzz"]}, 422, "unknown item id 'zzz'"),
    ("POST", "/recommendations", {"history": []}, 422, "history is empty"),
    ("POST", "/recommendations", {"users": ["3"], "history": ["1"]}, 422, "exactly one of"),
    ("POST", "/recommendations", {"users": ["3"], "k": 5000}, 422, "k:"),
    ("POST", "/recommendations", {"users": ["3"], "colour": "red"}, 422, "colour"),
    ("POST", "/recommendations", b"{not json", 422, "not valid JSON"),
])
def test_invalid_requests_get_one_sentence(server, method, path, body, code, fragment):
    url = server["base"] + path
    got, payload = _get(url) if method == "GET" else _post(url, body)
    assert got == code, payload
    assert isinstance(payload["detail"], str) and fragment in payload["detail"], payload
    assert "\n" not in payload["detail"] and "Traceback" not in payload["detail"]


def test_page_is_served(server):
    code, html = _get(server["base"] + "/")
    assert code == 200 and "<ol id=\"ddrm\">" in html


def _chrome():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chrome() is None or shutil.which("chromedriver") is None,
                    reason="needs chromium + chromedriver (installed by .ci/run)")
def test_page_in_headless_chromium(server):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = _chrome()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        driver.get(server["base"] + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert "mf" in driver.find_element(By.ID, "health").text
        driver.find_element(By.ID, "user").send_keys("3")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ddrm li")) == 20)
        backend = driver.find_elements(By.CSS_SELECTOR, "#backend li")
        ddrm = driver.find_elements(By.CSS_SELECTOR, "#ddrm li")
        assert len(backend) == 20 and ddrm[0].text.startswith("Film ")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#hist li")) > 0
        assert driver.find_element(By.ID, "error").text == ""
        if os.environ.get("DDRM_SCREENSHOT"):
            driver.save_screenshot(os.environ["DDRM_SCREENSHOT"])
    finally:
        driver.quit()
