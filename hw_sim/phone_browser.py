"""A phone's browser on the gate WiFi: headless Chromium with a phone's screen, driven by ChromeDriver.

Run inside the phone's network namespace, it does what a parent does: opens a web page,
lands on the splash, reads it, taps accept, and sees the welcome page.  It saves a
screenshot of each page and prints one JSON object with what it saw::

    ip netns exec PHONE python -m hw_sim.phone_browser --url http://example.com/ --shots DIR [--accept]

Chromium runs with a fresh profile and no background networking (it would otherwise try
to reach Google's services at start).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from hw_sim.paths import tool

# A mid-range Android phone: what many parents at a gate carry
PHONE_SCREEN = {"width": 393, "height": 851, "pixelRatio": 2.75}
PHONE_AGENT = (
    "Mozilla/5.0 (Linux; Android 13; M2101K6C) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)


def browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = tool("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # a phone set to Simplified Chinese, as most at a gate in China are
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE_SCREEN, "userAgent": PHONE_AGENT})
    return webdriver.Chrome(options=options, service=Service(executable_path=tool("chromedriver")))


def visit(url: str, shots: Path, accept: bool, timeout: float = 20.0) -> dict[str, Any]:
    profile = Path(tempfile.mkdtemp(prefix="phone-browser-"))
    driver = browser(profile)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(url)
        WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located((By.ID, "accept")))
        seen: dict[str, Any] = {
            "splash_url": driver.current_url,
            "lang": driver.find_element(By.TAG_NAME, "html").get_attribute("lang"),
            "headings": [h.text for h in driver.find_elements(By.CSS_SELECTOR, "main h2")],
            "urgent": [s.text for s in driver.find_elements(By.CSS_SELECTOR, "section.urgent h2")],
            "button": driver.find_element(By.CSS_SELECTOR, "#accept button").text,
            "page_width": driver.execute_script("return document.documentElement.scrollWidth"),
            "screen_width": driver.execute_script("return window.innerWidth"),
        }
        driver.save_screenshot(str(shots / "splash.png"))
        if accept:
            driver.find_element(By.CSS_SELECTOR, "#accept button").click()
            WebDriverWait(driver, timeout).until(expected_conditions.url_contains("/welcome"))
            seen["after_url"] = driver.current_url
            seen["after_status"] = driver.find_element(By.CSS_SELECTOR, "[role=status]").text
            driver.save_screenshot(str(shots / "welcome.png"))
        return seen
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw_sim.phone_browser")
    parser.add_argument("--url", required=True)
    parser.add_argument("--shots", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--accept", action="store_true", help="tap accept on the splash")
    args = parser.parse_args(argv)
    args.shots.mkdir(parents=True, exist_ok=True)
    try:
        result = visit(args.url, args.shots, args.accept)
    except WebDriverException as exc:
        result = {"error": f"{type(exc).__name__}: {exc.msg}"}
    print(json.dumps(result, ensure_ascii=False))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
