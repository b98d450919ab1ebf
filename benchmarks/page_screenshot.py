"""Screenshot of the `ddrm serve` web page for one user, taken with headless Chromium (selenium); prints JSON.

    python benchmarks/page_screenshot.py --checkpoint runs/ml-100k/ddrm-mf/ddrm.pt --data-root ../shared/data \\
        --user 13 --output docs/serve-page.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

from bench_serve import _free_port, _wait


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--user", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    cmd = [sys.executable, "-m", "ddrm", "serve", "--checkpoint", args.checkpoint, "--port", str(port), "--quiet"]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = None
    try:
        _wait(port, server)
        driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        driver.find_element(By.ID, "user").send_keys(args.user)
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ddrm li")) > 0)
        time.sleep(0.3)
        driver.save_screenshot(args.output)
        print(json.dumps({"screenshot": args.output, "user": args.user,
                          "changed": len(driver.find_elements(By.CSS_SELECTOR, "#ddrm li.only"))}))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
