"""The monitoring dashboard in a real browser: headless Chromium (Debian) through Playwright, the
page built by `make web`, the real monitoring-dashboard Edge Function on Deno, and an engine of
its own with the seed day (supabase/seed.sql) and its alerts evaluated.

The seed's rows near the edges of the 1 h / 24 h / 7 d windows are removed first, so that no row
leaves a window while the tests run and the numbers on the page equal the views exactly.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pydeploy import dashboard as dash
from pydeploy import engines, migrations
from pydeploy.engines import LocalState, StateFile
from pydeploy.engines.local_cluster import LocalCluster
from tests.browser import chromium

ROOT = Path(__file__).resolve().parent.parent
SECRET = "browser-test-jwt-secret-" + uuid.uuid4().hex
ADMIN_EMAIL = "ops-admin@example.com"
# the page refreshes every 2 s in these tests (?refresh=2); 30 s is the component's default
REFRESH = 2
DESKTOP = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}
SCREENSHOT = Path(os.environ.get("DASHBOARD_SCREENSHOT") or ROOT / "tests" / "artifacts" / "dashboard.png")


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def q(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """An engine of its own (the unreachable test stops it), migrated, with the seed day."""
    home = tmp_path_factory.mktemp("dashboard-engine")
    try:
        state = engines.up(engines.UpOptions(engine="local", home=home))
        url = state.db_url
        with psycopg.connect(url, autocommit=True) as c:
            migrations.migrate(c, ROOT / "supabase" / "migrations")
            c.execute((ROOT / "supabase" / "seed.sql").read_text())
            # keep every window edge clear for 20 minutes: no row leaves a window during the tests
            for edge in ("1 hour", "24 hours", "7 days"):
                c.execute(f"delete from public.whatsapp_notifications where created_at between "
                          f"now() - interval '{edge}' - interval '1 minute' "
                          f"and now() - interval '{edge}' + interval '20 minutes'")
            c.execute("select monitoring.refresh_rollups(p_full => true)")
            c.execute("select monitoring.evaluate_rules(now(), null, false)")
        yield home, url
    finally:
        engines.down(home, purge=True)


@pytest.fixture(scope="module")
def served(seeded: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dash.Dashboard]:
    log = tmp_path_factory.mktemp("dashboard-logs") / "functions.log"
    with dash.serving(seeded[1], jwt_secret=SECRET, email=ADMIN_EMAIL, functions_log=log) as d:
        yield d


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def open_page(browser: Any, served: dash.Dashboard) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def open_(key: str | None = None, viewport: dict[str, int] | None = None) -> Any:
        ctx = browser.new_context(viewport=viewport or DESKTOP, timezone_id="UTC")
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        page.goto(f"{served.url}/?refresh={REFRESH}#key={key or served.key}")
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


def test_the_admin_sees_the_health_badge_the_views_numbers_and_the_chart(open_page: Callable[..., Any],
                                                                          seeded: tuple[Path, str]) -> None:
    url = seeded[1]
    page = open_page()
    page.wait_for_selector("[data-testid=health-badge]", timeout=20_000)
    status = q(url, "select monitoring.health() ->> 'status'")[0][0]
    assert page.inner_text("[data-testid=health-badge]").strip().lower() == status
    total, accepted, sent, failed, pending, rate = q(
        url, "select total, accepted, sent, failed, pending, delivery_rate from monitoring.delivery_stats "
             "where window_name = '24h'")[0]
    assert number(page.inner_text("[data-testid=stat-total]")) == total
    assert number(page.inner_text("[data-testid=stat-accepted]")) == accepted, "delivered = accepted by WhatsApp"
    assert number(page.inner_text("[data-testid=stat-sent]")) == sent
    assert number(page.inner_text("[data-testid=stat-failed]")) == failed
    assert number(page.inner_text("[data-testid=stat-pending]")) == pending
    assert page.inner_text("[data-testid=stat-delivery-rate]").strip() == f"{rate:.2f} %"
    # the receipts (delivered, read) flow through from the view's extra columns
    delivered, read = q(url, "select delivered, read from monitoring.delivery_stats where window_name = '24h'")[0]
    assert number(page.inner_text("[data-testid=stat-delivered]")) == delivered
    assert number(page.inner_text("[data-testid=stat-read]")) == read
    # WhatsApp connection and the reasons of the health status
    wa = q(url, "select monitoring.health() -> 'services' -> 'whatsapp' ->> 'status'")[0][0]
    assert page.inner_text("[data-testid=whatsapp-status]").strip().lower() == wa
    # the chart: 24 hourly points drawn on a canvas with pixels on it, then 168 for 7 d
    chart = page.locator("[data-testid=delivery-chart]")
    assert chart.get_attribute("data-points") == "24"
    painted = page.evaluate("""() => {
        const c = document.querySelector('[data-testid=delivery-chart] canvas');
        if (!c || c.width < 100 || c.height < 100) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""")
    assert painted > 1000, f"the chart's canvas is (nearly) empty: {painted} painted pixels"
    page.get_by_role("button", name="7 d").click()
    wait_for(lambda: chart.get_attribute("data-points") == "168", what="the 7-day chart")
    # alerts with their runbook steps
    first = page.locator("[data-testid^=alert-]").first
    first.locator("summary").click()
    assert first.locator("ol li").count() >= 1
    assert page.errors == []


def test_a_new_error_log_shows_after_the_next_refresh_as_text_with_the_phone_masked(
        open_page: Callable[..., Any], seeded: tuple[Path, str]) -> None:
    url = seeded[1]
    page = open_page()
    page.wait_for_selector("[data-testid=recent-errors]", timeout=20_000)
    payload = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
               ' invalid number +55 11 98765-4321')
    q(url, "insert into public.whatsapp_error_logs (error_type, error_message) values (%s, %s)",
      ("xss_probe", payload))
    row = page.locator("[data-testid=recent-errors] tr", has_text="xss_probe")
    row.wait_for(timeout=REFRESH * 1000 * 5)
    text = row.inner_text()
    assert '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">' in text
    assert "+55*******4321" in text and "98765" not in text
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("[data-testid=recent-errors] script, [data-testid=recent-errors] img").count() == 0


def test_a_user_who_is_not_an_admin_sees_not_authorised(open_page: Callable[..., Any]) -> None:
    key = dash.mint_token(SECRET, sub=str(uuid.uuid4()), email="someone@example.com", admin=False)
    page = open_page(key)
    problem = page.locator("[data-testid=problem]")
    problem.wait_for(timeout=20_000)
    assert problem.get_attribute("data-kind") == "forbidden"
    assert "Not authorised" in problem.inner_text()
    assert "admins only" in problem.inner_text()
    assert page.locator("[data-testid=stat-total]").count() == 0


def test_a_forged_key_is_refused(open_page: Callable[..., Any]) -> None:
    key = dash.mint_token("another-secret-" + "x" * 32, sub="attacker", email="a@example.com")
    page = open_page(key)
    problem = page.locator("[data-testid=problem]")
    problem.wait_for(timeout=20_000)
    assert problem.get_attribute("data-kind") == "unauthorized"


def test_silencing_an_alert_from_the_page_is_in_monitoring_silences_with_who_did_it(
        open_page: Callable[..., Any], seeded: tuple[Path, str]) -> None:
    url = seeded[1]
    page = open_page()
    page.wait_for_selector("[data-testid=card-alerts]", timeout=20_000)
    first = page.locator("[data-testid^=alert-]", has=page.get_by_role("button", name="Silence…")).first
    rule = (first.get_attribute("data-testid") or "")[len("alert-"):]
    alert = page.locator(f"[data-testid=alert-{rule}]").first
    labels = q(url, "select labels from monitoring.active_alerts where rule_name = %s limit 1", (rule,))[0][0]
    alert.get_by_role("button", name="Silence…").click()
    comment = f"browser test {uuid.uuid4().hex[:8]}"
    alert.locator("select[name=duration]").select_option("1h")
    alert.locator("input[name=comment]").fill(comment)
    alert.get_by_role("button", name="Silence", exact=True).click()
    row = wait_for(lambda: q(url, "select id, matchers, created_by, ends_at - starts_at from monitoring.silences "
                                  "where comment = %s", (comment,)), what="the silence row")[0]
    sid, matchers, created_by, length = row
    assert created_by == f"{ADMIN_EMAIL} (pydeploy-dashboard)"
    assert {m["name"]: m["value"] for m in matchers} == labels
    assert length.total_seconds() == 3600
    # the page lists it, and the alert shows as silenced
    listed = page.locator("[data-testid=silences] tr", has_text=comment)
    listed.wait_for(timeout=REFRESH * 1000 * 5)
    page.locator(f"[data-testid=alert-{rule}]", has_text="silenced").first.wait_for(timeout=REFRESH * 1000 * 5)
    # expire it from the page: recorded with who did it
    listed.get_by_role("button", name="Expire").click()
    wait_for(lambda: q(url, "select expired_by from monitoring.silences where id = %s", (sid,))[0][0],
             what="expired_by")
    assert q(url, "select expired_by, ends_at <= now() from monitoring.silences where id = %s", (sid,))[0] == (
        f"{ADMIN_EMAIL} (pydeploy-dashboard)", True)


def test_the_layout_works_at_a_phone_width_and_a_desktop_width(open_page: Callable[..., Any]) -> None:
    def boxes(page: Any) -> tuple[dict[str, float], dict[str, float]]:
        page.wait_for_selector("[data-testid=card-totals]", timeout=20_000)
        page.wait_for_selector("[data-testid=delivery-chart] canvas", timeout=20_000)
        return (page.locator("[data-testid=card-whatsapp]").bounding_box(),
                page.locator("[data-testid=card-totals]").bounding_box())

    phone = open_page(viewport=PHONE)
    wa, totals = boxes(phone)
    assert totals["y"] >= wa["y"] + wa["height"], "cards stack on a phone"
    assert wa["width"] <= PHONE["width"]
    overflow = phone.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
    chart_width = phone.locator("[data-testid=delivery-chart] canvas").bounding_box()["width"]
    assert chart_width <= PHONE["width"]

    desk = open_page(viewport=DESKTOP)
    wa, totals = boxes(desk)
    assert abs(totals["y"] - wa["y"]) < 1 and totals["x"] > wa["x"] + wa["width"], "cards side by side"
    assert desk.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    desk.wait_for_timeout(300)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    desk.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def test_a_stopped_database_shows_unreachable_and_the_page_recovers_on_its_own(
        open_page: Callable[..., Any], seeded: tuple[Path, str]) -> None:
    home = seeded[0]
    page = open_page()
    page.wait_for_selector("[data-testid=health-badge]", timeout=20_000)
    # stop Postgres itself (pg_ctl stop -m fast), then start it again on the same port
    state = StateFile.at(home).read()
    assert isinstance(state, LocalState)
    pg = LocalCluster(home)
    data, bindir, port = state.data_dir, state.bindir, state.port
    pg.stop(data, bindir)
    try:
        banner = page.locator("[data-testid=banner-problem]")
        banner.wait_for(timeout=30_000)
        assert banner.get_attribute("data-kind") == "unreachable"
        assert "unreachable" in banner.inner_text().lower()
        # the last data stays on the page, never a blank page
        assert page.locator("[data-testid=stat-total]").count() == 1
        page.locator("[data-testid=stale]").wait_for(timeout=REFRESH * 1000 * 4)
    finally:
        pg.start(data, bindir, port)
    page.locator("[data-testid=banner-problem]").wait_for(state="detached", timeout=60_000)
    assert page.locator("[data-testid=stale]").count() == 0
    assert page.locator("[data-testid=health-badge]").count() == 1
