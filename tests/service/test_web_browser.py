"""The desk page in headless Chromium (Debian's ``chromium``, driven by Playwright).

The service runs in a thread of this process on 127.0.0.1 (``--api demo``: the bundled
mock order API). Every wait is on a page condition, never a sleep. Set
``LOOKUP_WEB_SCREENSHOTS=docs/screenshots`` to (re)write the README's screenshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from lookup.mockapi.server import MockConfig, MockOrderServer
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
TOKEN = "desk-browser-token"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("LOOKUP_WEB_SCREENSHOTS")
WAIT_MS = 60_000  # the longest any page condition may take (a loaded CI machine)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).is_file():
        return "no chromium browser (apt-get install -y chromium)"
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {_reason}", pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright

expect.set_options(timeout=WAIT_MS)


class Service:
    """``lookup serve --api demo`` in a thread with its own event loop; restartable on the
    same port. With ``mock``: against ``lookup mock-api`` with those faults instead (the
    demo's orders), on 127.0.0.1 in the same loop."""

    def __init__(self, jobs: Path, mock: MockConfig | None = None, **settings: Any) -> None:
        self.settings = Settings(api_url="demo", service_tokens=[SecretStr(TOKEN)],
                                 service_jobs_dir=jobs, **settings)  # fmt: skip
        self.mock = mock
        self.port = 0
        self.url = ""

    def start(self) -> Service:
        self._ready = threading.Event()
        self.url = ""
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or not self.url:
            raise AssertionError("the service did not start (its error follows, if any)")
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with contextlib.AsyncExitStack() as stack:
                settings = self.settings
                if self.mock is not None:
                    mock = await stack.enter_async_context(MockOrderServer(config=self.mock))
                    settings = settings.model_copy(update={"api_url": mock.orders_url})
                app = create_app(settings)
                url = await stack.enter_async_context(
                    serving(app, "127.0.0.1", self.port, shutdown_timeout=1))
                self.url, self.port = url, int(url.rsplit(":", 1)[1])
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()  # a failure to start reaches pytest as the thread's exception

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the service did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("jobs")).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The demo, paced at 200 checks/s: lookups and jobs last long enough to watch."""
    service = Service(tmp_path_factory.mktemp("jobs"), rate=200, max_in_flight=8, batch_size=1).start()
    yield service
    service.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1000, "height": 900},
                                  accept_downloads=True)  # fmt: skip
    elsewhere: list[str] = []

    def only_loopback(route: Route) -> None:  # works offline: no CDN, no font, no beacon
        if route.request.url.startswith(("http://127.0.0.1:", "blob:", "data:")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert elsewhere == []
    # A CSP violation or a script error shows up here (a refused fetch while the service
    # restarts is expected and logged by the browser as a failed resource).
    assert [e for e in errors if "Failed to load resource" not in e
            and "ERR_CONNECTION_REFUSED" not in e] == []  # fmt: skip


def shot(page: Page, name: str, selector: str | None = None) -> None:
    """A README screenshot (of one section, or the page) when LOOKUP_WEB_SCREENSHOTS is set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        path = str(Path(SHOTS) / f"{name}.png")
        if selector is None:
            page.screenshot(path=path)
        else:
            page.locator(selector).screenshot(path=path)


def sign_in(page: Page, service: Service, token: str = TOKEN) -> None:
    page.goto(service.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_label("令牌（向管理员索取，只保存在本标签页）").fill(token)
    page.keyboard.press("Enter")


def rows_csv(n: int) -> bytes:
    """``n`` rows of 10 candidates each, all in 杭州's city tier and without orders."""
    lines = ["id,mask,city"] + [f"r{i},1380571{i:03d}*,杭州" for i in range(n)]
    return ("\n".join(lines) + "\n").encode("gb18030")


def upload(page: Page, name: str, data: bytes) -> None:
    page.get_by_label("文件：CSV（含 mask 列，UTF-8 或 GB18030）或 JSONL").set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}]
    )
    page.get_by_role("button", name="上传并开始").click()


def download_rows(page: Page, job: Locator) -> list[dict[str, str]]:
    """The rows of the CSV download of ``job`` (an ``li.job`` of the page)."""
    with page.expect_download() as info:
        job.get_by_role("button", name="下载结果 CSV").click()
    path = info.value.path()
    return list(csv.DictReader(io.StringIO(Path(path).read_text("utf-8-sig"))))


# -- one lookup ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_lookup_from_the_form_to_the_result(page: Page, demo: Service, case: dict[str, Any]) -> None:  # fmt: skip
    sign_in(page, demo)
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    if case["name"] == "city hit":
        shot(page, "empty-form")
    page.get_by_label("掩码号码（必填）").fill(case["mask"])
    labels = {"city": "城市", "area_code": "区号"}
    for hint, value in case["hints"].items():
        page.get_by_label(labels[hint], exact=True).fill(value)
    page.get_by_label("掩码号码（必填）").press("Enter")  # keyboard only
    status = page.locator("#result-status")
    words = {"matched": "已找到", "not_found": "未找到"}[case["expected_status"]]
    expect(status.locator(".label")).to_have_text(words)  # in words, not by colour alone
    expect(status).to_have_class(f"status st-{case['expected_status']}")
    expect(page.locator("#result-h")).to_be_focused()
    phone = case["expected_phone"]
    if phone is None:
        expect(page.locator("#reveal")).to_be_hidden()
        expect(page.locator("#result-advice")).to_contain_text("所有候选号码都没有订单")
        return
    tier = {"city": "本市", "province": "本省其他城市", "national": "全国其他地区",
            "unlocated": "未定位号段"}[case["expected_tier"]]  # fmt: skip
    expect(page.locator("#result-tier")).to_have_text(tier)
    expect(page.locator("#result-phone")).to_have_text(f"{phone[:3]}****{phone[-4:]}")
    assert phone not in page.content()  # masked until revealed
    if case["name"] == "city hit":
        shot(page, "result", "#lookup-section")
    page.get_by_role("button", name="显示完整号码").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#result-phone")).to_have_text(phone)
    expect(page.locator("#reveal")).to_be_hidden()


def test_live_progress_per_tier(page: Page, slow: Service) -> None:
    case = next(c for c in CASES if c["expected_tier"] == "national")  # 745 checks at 200/s
    sign_in(page, slow)
    page.get_by_label("掩码号码（必填）").fill(case["mask"])
    page.get_by_label("城市", exact=True).fill(case["hints"]["city"])
    page.get_by_role("button", name="查找").click()
    national = page.locator('#tier-rows tr[data-tier="national"]')
    expect(national.locator(".tier-state")).to_have_text("进行中")
    expect(page.locator('#tier-rows tr[data-tier="city"] .tier-state')).to_have_text("完成")
    expect(page.locator("#lookup-state")).to_contain_text("接口状态：正常")
    shot(page, "running-lookup", "#lookup-section")
    expect(page.locator("#result-status .label")).to_have_text("已找到")
    expect(national.locator(".tier-state")).to_have_text("命中")
    expect(page.locator('#tier-rows tr[data-tier="city"] .tier-state')).to_have_text("无订单")


def test_a_wrong_token_is_said_clearly(page: Page, demo: Service) -> None:
    sign_in(page, demo, token="not-the-token")
    status = page.locator("#token-status")
    expect(status).to_have_text(
        "令牌错误：服务不接受这个令牌，请核对后重新输入（或向管理员索取）。")
    expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#token")).to_be_focused()
    page.get_by_role("button", name="English").click()
    expect(status).to_contain_text("Wrong token: the service does not accept it.")
    expect(page.get_by_label("Masked number (required)")).to_be_visible()
    # Nothing is sent without a token: the form points back at it.
    page.get_by_label("Masked number (required)").fill(CASES[0]["mask"])
    page.get_by_role("button", name="Look up").click()
    expect(status).to_have_text("Enter your access token first.")
    expect(page.locator("#lookup-result")).to_be_hidden()


def test_the_token_is_asked_once_kept_in_the_tab_and_sent_as_bearer(page: Page, demo: Service) -> None:  # fmt: skip
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization"))
            if "/v1/" in r.url else None)  # fmt: skip
    sign_in(page, demo)
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    assert page.evaluate("sessionStorage.getItem('lookup.token')") == TOKEN
    assert page.evaluate("localStorage.getItem('lookup.token')") is None
    expect(page.locator("#token")).to_have_value("")  # not left in the field
    page.reload()  # the same tab: not asked again
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    sent.clear()
    page.get_by_label("掩码号码（必填）").fill(CASES[0]["mask"])
    page.get_by_label("城市", exact=True).fill("杭州")
    page.get_by_role("button", name="查找").click()
    expect(page.locator("#result-status .label")).to_have_text("已找到")
    assert sent and set(sent) == {f"Bearer {TOKEN}"}
    other = page.context.new_page()  # another tab of the same browser: its own session
    other.goto(demo.url + "/")
    expect(other.locator("#token-status")).to_have_text("服务要求令牌：请在上方输入访问令牌。")
    # a first visit is asked for the token, not told it is wrong
    expect(other.locator("#token")).not_to_have_attribute("aria-invalid", "true")
    expect(other.locator("#token-status")).not_to_have_class("note bad")
    expect(other.locator("#token")).to_be_focused()
    other.close()


def test_bad_input_shows_the_services_message_next_to_the_field(page: Page, demo: Service) -> None:  # fmt: skip
    sign_in(page, demo)
    mask = page.get_by_label("掩码号码（必填）")
    mask.fill("12345")
    mask.press("Enter")
    # the service answers in the page's language (Accept-Language from the toggle)
    expect(page.locator("#mask-error")).to_have_text("“12345”共有 5 位数字和通配符；中国手机号是 11 位")
    expect(mask).to_have_attribute("aria-invalid", "true")
    expect(mask).to_be_focused()
    mask.fill(CASES[0]["mask"])
    page.get_by_label("城市", exact=True).fill("火星")
    mask.press("Enter")
    expect(page.locator("#city-error")).to_contain_text("未知城市“火星”")
    expect(page.locator("#mask-error")).to_have_text("")
    page.get_by_label("城市", exact=True).fill("")
    page.get_by_label("邮编").fill("abc")
    mask.press("Enter")
    expect(page.locator("#zip-error")).to_have_text("邮编“abc”第 1 位是“a”：邮编是 6 位数字（310000、071000），中间不加分隔符")
    expect(page.get_by_label("邮编")).to_be_focused()
    page.get_by_label("邮编").fill("")
    page.get_by_label("城市", exact=True).fill("杭州")
    page.get_by_label("运营商").select_option("电信")  # 138 is 移动's
    mask.press("Enter")
    expect(page.locator("#carrier-error")).to_contain_text("belong to other carriers")
    expect(page.get_by_label("运营商")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#mask-error")).to_have_text("")
    expect(page.locator("#lookup-result")).to_be_hidden()


def test_the_api_state_shows_and_a_failed_lookup_says_what_to_do(page: Page, tmp_path: Path) -> None:  # fmt: skip
    """Against ``lookup mock-api`` with faults: above 50/s it answers 429 without Retry-After
    (throttled), then an outage (API down); each lookup ends at its deadline."""
    case = next(c for c in CASES if c["expected_tier"] == "province")  # 526 checks
    throttling = MockConfig(rate_limit=50, rate_limit_style="429-bare")
    service = Service(tmp_path / "a", throttling, rate=400, deadline=4).start()
    try:
        sign_in(page, service)
        page.get_by_label("掩码号码（必填）").fill(case["mask"])
        page.get_by_label("城市", exact=True).fill("杭州")
        page.get_by_role("button", name="查找").click()
        expect(page.locator("#lookup-state")).to_contain_text("接口状态：接口限流，已放慢")
        status = page.locator("#result-status")
        expect(status.locator(".label")).to_have_text("无法确定")  # the deadline came first
        expect(status.locator(".icon")).to_have_text("?")
        expect(status).to_have_css("background-color", "rgb(255, 242, 214)")
        expect(page.locator("#result-advice")).to_contain_text("请稍后用同样的条件再查一次")
        expect(page.locator("#result-reason")).to_contain_text("未能核查")  # the reason in the page's language
    finally:
        service.stop()
    down = MockConfig(outage_after=40, outage_seconds=600)
    service = Service(tmp_path / "b", down, rate=200, deadline=4).start()
    try:
        sign_in(page, service)
        page.get_by_label("掩码号码（必填）").fill(case["mask"])
        page.get_by_label("城市", exact=True).fill("杭州")
        page.get_by_role("button", name="查找").click()
        expect(page.locator("#lookup-state")).to_contain_text("接口状态：接口不可用，等待恢复")
        status = page.locator("#result-status")
        expect(status.locator(".label")).to_have_text("接口错误")
        expect(status.locator(".icon")).to_have_text("✖")
        expect(status).to_have_css("background-color", "rgb(253, 231, 229)")
        expect(page.locator("#result-advice")).to_contain_text("请稍后再试")
        shot(page, "api-down-zh", "main")
        page.get_by_role("button", name="English").click()
        expect(status.locator(".label")).to_have_text("API error")
        expect(page.locator("#result-advice")).to_contain_text("Try again later")
        expect(page.locator("#history-list li").first).to_contain_text("API error")
        shot(page, "api-down-en", "main")
    finally:
        service.stop()


def test_hostile_text_renders_as_text(page: Page, demo: Service) -> None:
    page.add_init_script("window.__xss = 0;")
    sign_in(page, demo)
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    img = "<img src=x onerror=window.__xss=1>"
    mask = page.get_by_label("掩码号码（必填）")
    mask.fill(img)
    mask.press("Enter")
    expect(page.locator("#mask-error")).to_contain_text(f"“{img}”第 1 位出现了意外的“<”")
    mask.fill(CASES[0]["mask"])
    page.get_by_label("城市", exact=True).fill("<script>window.__xss=2</script>")
    mask.press("Enter")
    expect(page.locator("#city-error")).to_contain_text("未知城市“<script>window.__xss=2</script>”")
    cells = f"id,mask,city\n{img},{img},杭州\n<b>x</b>,{CASES[0]['mask']},{img}\n"
    upload(page, f"{img}.csv", cells.encode())
    job = page.locator("li.job").first
    expect(job.locator("h3")).to_have_text(f"{img}.csv")
    expect(job.locator(".job-state")).to_have_text("已完成")
    expect(job.locator(".job-counts")).to_have_text("无效行 2")
    rows = download_rows(page, job)
    assert [r["id"] for r in rows] == [img, "<b>x</b>"]  # the cells come back as they went
    assert page.locator("main img, main script, main b").count() == 0
    assert page.evaluate("window.__xss") == 0


def test_keyboard_only_with_labels_and_visible_focus(page: Page, demo: Service) -> None:
    page.goto(demo.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    token = page.get_by_label("令牌（向管理员索取，只保存在本标签页）")
    expect(token).to_be_focused()  # the page asks for the token first
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    expect(page.locator("#mask")).to_be_focused()  # the token field folded away: on to the form
    page.keyboard.press("Shift+Tab")
    order = [page.evaluate("document.activeElement.id")]
    for _ in range(11):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["token-forget", "mask", "city", "province", "area_code", "zip",
                     "carrier", "mode", "lookup-submit", "batch-file", "batch-mode",
                     "batch-submit"]  # fmt: skip
    for _ in range(10):  # back from 上传并开始 to the mask
        page.keyboard.press("Shift+Tab")
    expect(page.locator("#mask")).to_be_focused()
    # Every focused control shows it: the 3 px outline of :focus-visible.
    expect(page.locator("#mask")).to_have_css("outline-style", "solid")
    expect(page.locator("#mask")).to_have_css("outline-width", "3px")
    page.keyboard.type(CASES[0]["mask"])
    page.keyboard.press("Tab")
    page.keyboard.type("杭州")
    page.keyboard.press("Enter")
    expect(page.locator("#result-h")).to_be_focused()
    page.keyboard.press("Tab")
    reveal = page.get_by_role("button", name="显示完整号码")
    expect(reveal).to_be_focused()
    expect(reveal).to_have_css("outline-style", "solid")
    page.keyboard.press("Enter")
    expect(page.locator("#result-phone")).to_have_text(CASES[0]["expected_phone"])
    expect(page.locator("#result-phone")).to_be_focused()  # not lost with the button
    # Every field has a label naming it (a job's progress bar too).
    upload(page, "one.csv", f"mask,city\n{CASES[0]['mask']},杭州\n".encode())
    expect(page.locator("li.job .job-state").first).to_have_text("已完成")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, progress')]
        .filter(e => !(e.labels && e.labels.length && e.labels[0].textContent.trim()))
        .map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
    names = [page.get_by_label(n, exact=True).count() for n in
             ("掩码号码（必填）", "城市", "省份", "区号", "邮编", "运营商")]  # fmt: skip
    assert names == [1] * 6


def look_up(page: Page, case: dict[str, Any]) -> None:
    page.get_by_label("掩码号码（必填）").fill(case["mask"])
    page.get_by_label("城市", exact=True).fill(case["hints"].get("city", ""))
    page.get_by_label("区号", exact=True).fill(case["hints"].get("area_code", ""))
    page.get_by_label("掩码号码（必填）").press("Enter")


def test_signed_in_the_token_section_is_one_line_and_the_result_stays_in_view(
    page: Page, demo: Service
) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(page, demo)
    section = page.locator("#token-section")
    expect(section).to_have_class(re.compile(r"\bcompact\b"))
    expect(page.locator("#token-form")).to_be_hidden()
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    expect(page.get_by_role("button", name="更换令牌")).to_be_visible()
    box = section.bounding_box()
    assert box is not None and box["height"] < 60, box  # one line, not a form
    look_up(page, CASES[0])
    expect(page.locator("#result-status .label")).to_have_text("已找到")
    expect(page.locator("#result-status")).to_be_in_viewport()
    shot(page, "signed-in-result")
    expect(page.locator("#result-orders")).to_be_in_viewport()
    page.get_by_role("button", name="更换令牌").click()  # back to the full form
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#token")).to_be_focused()
    expect(section).not_to_have_class(re.compile(r"\bcompact\b"))
    assert page.evaluate("sessionStorage.getItem('lookup.token')") is None


def test_the_order_count_and_a_copy_button_for_the_revealed_number(
    page: Page, demo: Service
) -> None:
    case = CASES[0]  # 13857152046: 9 orders in the demo's data
    phone = case["expected_phone"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, demo)
    look_up(page, case)
    expect(page.locator("#result-orders")).to_have_text("9 个订单")
    expect(page.locator("#copy")).to_be_hidden()  # nothing to copy before the reveal
    page.get_by_role("button", name="显示完整号码").click()
    expect(page.locator("#result-phone")).to_have_text(phone)
    page.get_by_role("button", name="复制号码").click()
    expect(page.locator("#copy-status")).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == phone
    page.get_by_role("button", name="English").click()
    expect(page.locator("#result-orders")).to_have_text("9 orders")
    expect(page.get_by_role("button", name="Copy number")).to_be_visible()


def test_without_the_async_clipboard_the_copy_falls_back(page: Page, demo: Service) -> None:
    """A plain-http page on a LAN address has no ``navigator.clipboard``: the copy goes
    through a selected text area and ``execCommand('copy')``."""
    page.add_init_script("""
        Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined });
        window.__copied = [];
        document.addEventListener('copy', () => {
          const a = document.activeElement;
          window.__copied.push(a && a.tagName === 'TEXTAREA' ? a.value : null);
        });""")
    sign_in(page, demo)
    assert page.evaluate("navigator.clipboard") is None
    look_up(page, CASES[0])
    page.get_by_role("button", name="显示完整号码").click()
    page.get_by_role("button", name="复制号码").click()
    expect(page.locator("#copy-status")).to_have_text("已复制")
    assert page.evaluate("window.__copied") == [CASES[0]["expected_phone"]]
    expect(page.locator("#copy")).to_be_focused()  # back where the operator was
    assert page.locator("textarea").count() == 0  # the helper is gone


def test_this_sessions_lookups_are_listed_masked_kept_in_the_tab_and_clearable(
    page: Page, demo: Service
) -> None:
    sign_in(page, demo)
    expect(page.locator("#history")).to_be_hidden()
    hit, miss = CASES[0], next(c for c in CASES if c["expected_status"] == "not_found")
    look_up(page, hit)
    expect(page.locator("#result-status .label")).to_have_text("已找到")
    page.get_by_role("button", name="显示完整号码").click()  # revealed: still masked in the list
    expect(page.locator("#result-phone")).to_have_text(hit["expected_phone"])
    look_up(page, miss)
    expect(page.locator("#result-status .label")).to_have_text("未找到")
    items = page.locator("#history-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text(f"{miss['mask']}")
    expect(items.nth(0)).to_contain_text("未找到")
    masked = f"{hit['expected_phone'][:3]}****{hit['expected_phone'][-4:]}"
    expect(items.nth(1)).to_contain_text(f"{masked} (浙江 杭州) — 已找到 · 本市 · 9 个订单")
    expect(items.nth(1).locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    kept = page.evaluate("sessionStorage.getItem('lookup.history')")
    assert hit["expected_phone"] not in kept and masked in kept
    assert page.evaluate("localStorage.getItem('lookup.history')") is None
    page.reload()  # the same tab keeps it
    expect(items).to_have_count(2)
    page.get_by_role("button", name="English").click()
    expect(items.nth(1)).to_contain_text("Found · City · 9 orders")
    shot(page, "session-lookups", "#history")
    page.get_by_role("button", name="Clear the list").click()
    expect(page.locator("#history")).to_be_hidden()
    expect(items).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('lookup.history')") is None
    other = page.context.new_page()  # another tab: its own session, an empty list
    other.goto(demo.url + "/")
    expect(other.locator("body")).to_have_attribute("data-ready", "true")
    expect(other.locator("#history")).to_be_hidden()
    other.close()


def test_the_page_404s_unknown_paths_and_has_a_favicon(page: Page, demo: Service) -> None:
    sign_in(page, demo)
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")
    href = page.locator("link[rel=icon]").get_attribute("href")
    for path in (href, "/favicon.ico"):  # the page's icon, and where browsers look by default
        icon = page.request.get(f"{demo.url}{path}")
        assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml", path
        assert icon.body().startswith(b"<svg")
    gone = page.request.get(demo.url + "/no-such-page")
    assert gone.status == 404
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["status"] == 404


# -- batch jobs ----------------------------------------------------------------------------


def test_a_batch_upload_to_the_download_with_every_row(page: Page, demo: Service) -> None:
    lines_csv = ["id,mask,city,area_code"]
    for i, c in enumerate(CASES, 1):
        lines_csv.append(f"d{i},{c['mask']},{c['hints'].get('city', '')},{c['hints'].get('area_code', '')}")
    lines_csv.append("bad,12345,杭州,")
    sign_in(page, demo)
    upload(page, "台账.csv", ("\n".join(lines_csv) + "\n").encode("gb18030"))
    job = page.locator("li.job").first
    expect(job.locator("h3")).to_have_text("台账.csv")
    expect(job.locator(".job-state")).to_have_text("已完成")
    expect(job.locator(".job-rows")).to_have_text(f"{len(CASES) + 1} / {len(CASES) + 1} 行（100%）")
    expect(job.locator(".job-counts")).to_have_text("已找到 5 · 未找到 1 · 无效行 1")
    # When it was submitted, started and ended (two jobs of one file name told apart).
    api = page.request.get(demo.url + "/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    shown = next(j for j in api.json()["jobs"] if j["filename"] == "台账.csv")
    for key, word in (("created", "提交"), ("started", "开始"), ("finished", "结束")):
        when = job.locator(f".job-times time.job-{key}")
        expect(when).to_have_attribute("datetime", shown[key])
        expect(when).to_have_text(re.compile(rf"^{word} \d\d:\d\d:\d\d$"))
    rows = download_rows(page, job)
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(1, len(CASES) + 1)] + ["bad"]
    assert [r["phone"] for r in rows[:-1]] == [c["expected_phone"] or "" for c in CASES]
    assert rows[-1]["status"] == "invalid"
    with page.expect_download() as info:
        job.get_by_role("button", name="下载结果 JSONL").click()
    assert info.value.suggested_filename == "台账-results.jsonl"
    lines = Path(info.value.path()).read_text("utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in rows]
    # The same rows as CSV UTF-8 (Excel's "CSV UTF-8" has a BOM) and as JSONL.
    jsonl = "".join(json.dumps({"id": f"j{i}", "mask": c["mask"], **c["hints"]},
                               ensure_ascii=False) + "\n" for i, c in enumerate(CASES, 1))  # fmt: skip
    for name, data in (("utf8.csv", "\ufeff".encode() + "\n".join(lines_csv).encode() + b"\n"),
                       ("rows.jsonl", jsonl.encode())):  # fmt: skip
        upload(page, name, data)
        job = page.locator("li.job").first
        expect(job.locator("h3")).to_have_text(name)
        expect(job.locator(".job-state")).to_have_text("已完成")
        expect(job.locator(".job-counts")).to_contain_text("已找到 5 · 未找到 1")
        got = download_rows(page, job)
        assert [r["phone"] for r in got[: len(CASES)]] == [c["expected_phone"] or "" for c in CASES]


def test_cancelling_a_job(page: Page, slow: Service) -> None:
    sign_in(page, slow)
    upload(page, "big.csv", rows_csv(200))  # 2,000 checks at 200/s: ~10 s
    job = page.locator("li.job").first
    expect(job.locator(".job-state")).to_have_text("运行中")
    expect(job.locator(".job-eta")).to_have_text(re.compile(r"^预计剩余 \d+:\d\d$"))
    expect(job.locator(".job-counts")).to_contain_text("未找到")
    job.get_by_role("button", name="取消任务").click()
    expect(job.locator(".job-state")).to_have_text("已取消")
    done = int(job.locator("progress").get_attribute("value") or "-1")
    assert 0 <= done < 200
    rows = download_rows(page, job)
    assert len(rows) == done and {r["status"] for r in rows} <= {"not_found"}


def test_a_restart_in_the_middle_of_a_job_then_it_finishes(
    page: Page, tmp_path: Path
) -> None:
    service = Service(tmp_path / "jobs", rate=200, max_in_flight=8, batch_size=1).start()
    try:
        sign_in(page, service)
        total = 60  # 600 checks at 200/s: ~3 s
        upload(page, "restart.csv", rows_csv(total))
        job = page.locator("li.job").first
        bar = job.locator("progress")
        # The job's row appears once the upload's answer is in: wait for it before reading it.
        expect(bar).to_be_attached()
        page.wait_for_function(
            "() => { const p = document.querySelector('li.job progress');"
            " return p !== null && Number(p.value) >= 8; }",
            timeout=WAIT_MS)  # fmt: skip
        shot(page, "batch-in-progress", "#batch-section")
        service.stop()
        expect(job.locator(".job-state")).to_have_text("正在重新连接服务…")
        before = int(bar.get_attribute("value") or "0")
        assert 8 <= before < total, before
        service.start()  # same port, same jobs folder: the job resumes from its journal
        expect(job.locator(".job-state")).to_have_text("已完成")
        expect(job.locator(".job-rows")).to_have_text(f"{total} / {total} 行（100%）")
        rows = download_rows(page, job)
        assert [r["id"] for r in rows] == [f"r{i}" for i in range(total)]
        assert {r["status"] for r in rows} == {"not_found"}
    finally:
        service.stop()
