"""The web page at `/`, driven in headless Chromium: pick a before/after pair, chat, and see the
predicted change mask over the after image. Skipped only where Chromium or its driver is missing
(CI installs both: see .ci/run)."""

import json
import shutil
import urllib.request

import pytest
from PIL import Image, ImageDraw

from rsforge.serve.client import data_url, image_message

from .conftest import free_port

pytestmark = pytest.mark.ray

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("headless Chromium + chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402 (only once Chromium is known to be there)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PROMPT = "describe the changes"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    before = Image.new("RGB", (64, 64), (40, 120, 40))
    after = before.copy()
    ImageDraw.Draw(after).rectangle([8, 8, 40, 40], fill=(230, 230, 230))  # a new "building"
    before.save(root / "before.png")
    after.save(root / "after.png")
    return root / "before.png", root / "after.png"


@pytest.fixture(scope="module")
def server(ray_session, tiny_model_dir):
    from ray import serve

    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    app = run(ServeConfig(models=[{"path": str(tiny_model_dir)}], port=free_port()), blocking=False)
    yield app
    serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_page_chats_and_overlays_the_change_mask(server, browser, images):
    root = server.url.removesuffix("/v1")
    model = server.models[0]["model"]
    before, after = images
    browser.get(root + "/")
    wait = WebDriverWait(browser, 60)
    # The model list comes from /v1/models.
    wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == model)
    browser.find_element(By.ID, "before-file").send_keys(str(before))
    browser.find_element(By.ID, "after-file").send_keys(str(after))
    for which in ("before", "after"):
        wait.until(lambda d, w=which: d.find_element(By.ID, f"{w}-img").get_attribute("naturalWidth") == "64")

    # Chat: the page's answer is the API's answer for the same pair (greedy decoding is deterministic).
    expected = post(server.url + "/chat/completions", {
        "model": model, "max_tokens": 32, "messages": [image_message(PROMPT, Image.open(before), Image.open(after))],
    })["choices"][0]["message"]["content"]
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys(PROMPT)
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#messages .assistant"))
    assert browser.find_element(By.ID, "error").text == ""
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#messages .user")] == [PROMPT]
    answer = browser.execute_script("return document.querySelector('#messages .assistant').textContent")
    assert answer == expected

    # A follow-up turn carries the history: a second answer appears.
    prompt.send_keys("and now?")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages .assistant")) == 2)
    assert browser.find_element(By.ID, "error").text == ""

    # The mask: drawn over the after image, as many red pixels as the API reports changed.
    browser.find_element(By.ID, "detect").click()
    wait.until(lambda d: d.find_element(By.ID, "overlay").is_displayed())
    stats = post(root + "/v1/change/detect",
                 {"model": model, "before": data_url(before), "after": data_url(after)})["stats"]
    overlay = browser.find_element(By.ID, "overlay")
    assert int(overlay.get_attribute("data-changed")) == stats["changed_pixels"]
    assert f"changed {stats['changed_pixels']} px" in browser.find_element(By.ID, "stats").text
    over, under = (e.rect for e in (overlay, browser.find_element(By.ID, "after-img")))
    assert (over["x"], over["y"], over["width"]) == (under["x"], under["y"], under["width"])

    # The opacity slider sets the overlay's opacity.
    browser.execute_script(
        "const s = document.getElementById('opacity'); s.value = 80; s.dispatchEvent(new Event('input'));"
    )
    assert float(overlay.value_of_css_property("opacity")) == pytest.approx(0.8)


def test_a_new_pair_mid_chat_is_what_the_page_sends_and_the_old_mask_goes(server, browser, images, tmp_path):
    """Issue 20, item 9: after a new pair was picked mid-chat the page kept sending the first pair (the
    images travel with the first user turn), and the old mask's statistics stayed under the new image."""
    root = server.url.removesuffix("/v1")
    model = server.models[0]["model"]
    browser.get(root + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == model)

    def pick(before, after):
        browser.find_element(By.ID, "before-file").send_keys(str(before))
        browser.find_element(By.ID, "after-file").send_keys(str(after))
        for which, path in (("before", before), ("after", after)):
            wait.until(lambda d, w=which, p=path: d.find_element(By.ID, f"{w}-img").get_attribute("src")
                       == data_url(p))

    def send(text):
        count = len(browser.find_elements(By.CSS_SELECTOR, "#messages .assistant"))
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys(text)
        browser.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages .assistant")) == count + 1)

    pick(*images)
    send(PROMPT)
    browser.find_element(By.ID, "detect").click()
    wait.until(lambda d: d.find_element(By.ID, "stats").text.startswith("changed"))

    new_before, new_after = tmp_path / "before2.png", tmp_path / "after2.png"
    Image.new("RGB", (64, 64), (20, 20, 160)).save(new_before)
    Image.new("RGB", (64, 64), (200, 180, 20)).save(new_after)
    pick(new_before, new_after)
    assert browser.find_element(By.ID, "stats").text == ""
    assert not browser.find_element(By.ID, "overlay").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#messages .msg") == []  # a new pair starts a new chat

    # What the page sends from now on: the new pair, in the chat and to the mask endpoint.
    browser.execute_script("""
        window.sent = [];
        const real = window.fetch;
        window.fetch = (path, init) => {
          if (init && init.body) window.sent.push([path, JSON.parse(init.body)]);
          return real(path, init);
        };""")
    send("and now?")
    browser.find_element(By.ID, "detect").click()
    wait.until(lambda d: d.find_element(By.ID, "stats").text.startswith("changed"))
    (chat_path, chat), (detect_path, detect) = browser.execute_script("return window.sent")
    assert chat_path == "/v1/chat/completions" and detect_path == "/v1/change/detect"
    urls = [p["image_url"]["url"] for m in chat["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]
    assert urls == [data_url(new_before), data_url(new_after)]
    assert (detect["before"], detect["after"]) == (data_url(new_before), data_url(new_after))
    stats = post(root + "/v1/change/detect", {"model": model, "before": data_url(new_before),
                                              "after": data_url(new_after)})["stats"]
    assert f"changed {stats['changed_pixels']} px" in browser.find_element(By.ID, "stats").text
