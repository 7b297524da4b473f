"""The web dashboard in a real headless browser: ``pvhpc run --web`` and ``pvhpc dashboard``.

The browser is the system's Chromium (Debian's ``chromium`` package), driven by
Playwright; Playwright's own browser builds are never used. Without either, the
tests are skipped and say why. Everything runs on 127.0.0.1.

- A workflow run with ``--web``: a row per stage, loss-check lines, charts whose
  data grow, a thumbnail whose pixels are the source frame of its uniqueId shrunk
  by block means, a stop button that stops its stage, and the whole-workflow stop
  whose summary reaches the page. The test also takes the page's screenshot (to
  ``$PVHPC_DASHBOARD_SCREENSHOT`` if set: that is how docs/img/dashboard.png is made).
- ``pvhpc dashboard`` attached to stages by their status channels once the stream
  ended: the page's counts are the status channels' counts; a configure the
  stage's access security allows is answered by the stage, a stop it refuses is
  answered as refused and changes nothing, and so is a stop without the token; a
  read-only dashboard has no control at all.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from harness import ROOT, Recorder, pv_get, wait_accounted, wait_for
from pvhpc.ntnda import get_image

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "dashboard-test-token"


@pytest.fixture(scope="module")
def browser():
    try:
        import aiohttp  # noqa: F401
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"the dashboard tests need the test extra ({exc.name} is not installed)")
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def new_page(browser, url: str):
    page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    return page


def row_values(page, key: str) -> dict:
    """The numbers a stage's row shows (``data-value`` of each cell)."""
    return page.evaluate(
        """(key) => {
            const tr = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
            if (!tr) return null;
            const out = {};
            tr.querySelectorAll("td[data-field]").forEach((td) => {
                out[td.dataset.field] = td.dataset.value !== undefined ? td.dataset.value
                                                                       : td.textContent;
            });
            return out;
        }""",
        key,
    )


def answer_after(page, click) -> str:
    """Click, then the answer the page shows for it."""
    seq = page.evaluate("Number(document.getElementById('answer').dataset.seq || 0)")
    click()
    page.wait_for_function(f"Number(document.getElementById('answer').dataset.seq || 0) > {seq}")
    return page.text_content("#answer")


def block_means(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[0] // factor, image.shape[1] // factor
    cut = image[: h * factor, : w * factor].astype(np.float64)
    return np.rint(cut.reshape(h, factor, w, factor).mean(axis=(1, 3)))


def spot_frames(path, n: int = 20) -> str:
    """``n`` 320x240 uint8 frames: a bright spot going round on a gradient, with noise."""
    y, x = np.mgrid[0:240, 0:320]
    rng = np.random.default_rng(16)
    frames = []
    for k in range(n):
        a = 2 * np.pi * k / n
        cx, cy = 160 + 90 * np.cos(a), 120 + 70 * np.sin(a)
        spot = 200 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 18.0**2))
        image = 20 + 30 * x / 320 + spot + rng.normal(0, 6, x.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    np.save(path, np.stack(frames))
    return str(path)


def workflow(prefix: str, frames: str) -> dict:
    """source (320x240 frames, 10 Hz) -> work -> next."""
    stage = {"report-period": 0.5}
    return {
        "name": f"dash-{prefix}",
        "network": "loopback",
        "stages": {
            "work": {
                "type": "consumer",
                "input-channel": f"{prefix}:image",
                "output-channel": f"{prefix}:w:*:output",
                "status-channel": f"{prefix}:w:*:status",
                "control-channel": f"{prefix}:w:*:control",
                "receiver-queue-size": 100,
                **stage,
            },
            "next": {
                "type": "consumer",
                "input-channel": f"{prefix}:w:1:output",
                "status-channel": f"{prefix}:n:*:status",
                "control-channel": f"{prefix}:n:*:control",
                **stage,
            },
            "sim": {
                "type": "sim",
                "channel-name": f"{prefix}:image",
                "input-file": frames,
                "frame-rate": 10,
                "runtime": 120,
            },
        },
    }


def test_run_with_web_dashboard(browser, procs, prefix, tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(json.dumps(workflow(prefix, spot_frames(tmp_path / "frames.npy"))))
    source = Recorder(f"{prefix}:image", request="field()")
    source.keep_objects = True
    run = procs.start(
        "run", path, "--web", "127.0.0.1:0", "--view", "none", "--log-dir", tmp_path, name="run"
    )
    m = run.wait_for_output(r"dashboard: (http://127\.0\.0\.1:\d+/)#token=(\S+)")
    url, token = m.group(1), m.group(2)
    page = new_page(browser, f"{url}#token={token}")

    # A row per stage, in the workflow's order, each with a state.
    page.wait_for_function(
        "['work/1', 'next/1', 'sim'].every(k => document.querySelector(`tr[data-key='${k}']`))"
    )
    keys = page.eval_on_selector_all("#stages tbody tr", "rows => rows.map(r => r.dataset.key)")
    assert keys == ["work/1", "next/1", "sim"]
    page.wait_for_function(
        "document.querySelector(\"tr[data-key='next/1'] [data-field='processed']\")"
        ".dataset.value > 0"
    )
    labels = page.eval_on_selector_all("#sets li", "li => li.map(l => l.dataset.label)")
    assert labels == ["work 1", "next 1"]

    # The charts move: new points arrive and the rates are drawn.
    n0 = page.evaluate("pvhpc.charts.rate.data[0].length")
    page.wait_for_function(f"pvhpc.charts.rate.data[0].length >= {n0 + 3}")
    assert page.evaluate("pvhpc.series.rate['work/1'].some(v => v > 0)")
    assert page.evaluate("pvhpc.series.p99['next/1'].some(v => v > 0)")
    assert page.locator("#chart-rate canvas").count() >= 1

    # The thumbnail of the source: the frame of its uniqueId, in 2x2 block means.
    page.select_option("#thumb-channel", f"{prefix}:image")
    page.wait_for_function("Number(document.getElementById('thumb').dataset.uniqueId) > 0")
    shown = page.evaluate(
        """() => {
            const c = document.getElementById('thumb');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const px = [];
            for (let i = 0; i < d.length; i += 4) px.push(d[i]);
            return {w: c.width, h: c.height, uid: Number(c.dataset.uniqueId), px};
        }"""
    )
    assert (shown["w"], shown["h"]) == (160, 120)
    uid = shown["uid"]
    frame = wait_for(
        lambda: {o["uniqueId"]: o for o in list(source.objects)}.get(uid),
        10,
        f"frame {uid} on the source",
    )
    expected = block_means(np.asarray(get_image(frame)), 2)
    pixels = np.array(shown["px"], dtype=np.float64).reshape(120, 160)
    assert np.abs(pixels - expected).max() <= 1, "thumbnail differs from the source frame"
    source.close()

    page.wait_for_function("pvhpc.charts.rate.data[0].length >= 6")
    shot = os.environ.get("PVHPC_DASHBOARD_SCREENSHOT") or str(tmp_path / "dashboard.png")
    page.screenshot(path=shot, full_page=True)
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # The stop button of one stage stops it, answered by its statusMessage.
    text = answer_after(
        page, lambda: page.click("tr[data-key='next/1'] button[data-command='stop']")
    )
    assert text == "next/1: Stopping"
    page.wait_for_function(
        "document.querySelector(\"tr[data-key='next/1'] [data-field='state']\")"
        ".textContent === 'done'"
    )
    assert row_values(page, "work/1")["state"] == "ok"

    # The whole workflow: the runner stops it; the summary reaches the page.
    text = answer_after(page, lambda: page.click("#stop-all"))
    assert text.startswith("Stopping the workflow"), text
    page.wait_for_function("!document.getElementById('result').hidden")
    result = page.text_content("#result")
    run.wait(60)
    out = run.output()
    assert "stopped: stop from the dashboard" in out
    summary = [line for line in result.splitlines() if line.startswith("RESULT")]
    assert summary and all(line in out for line in summary), (result, out[-2000:])
    assert page.text_content("#link") == "ended"


def acf(path, writers: str) -> str:
    path.write_text(
        f"UAG(ops) {{{writers}}}\n"
        "ASG(DEFAULT) { RULE(1, READ) }\n"
        "ASG(CONTROL) {\n  RULE(1, READ)\n  RULE(1, WRITE) { UAG(ops) }\n}\n"
    )
    return str(path)


def pvhpc_control(channel: str, command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    return subprocess.run(
        [sys.executable, "-m", "pvhpc", "control", channel, command, "-t", "10"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_attached_dashboard_counts_and_access(browser, procs, prefix, tmp_path):
    frames = 40
    allowed = acf(tmp_path / "allowed.acf", getpass.getuser())
    refused = acf(tmp_path / "refused.acf", "pvhpc-test-nobody")
    common = ["-rp", "0.5", "-sqs", "100"]
    a = procs.start(
        "consumer", "-ic", f"{prefix}:image", "-oc", f"{prefix}:a:*:output",
        "-sc", f"{prefix}:a:*:status", "-cc", f"{prefix}:a:*:control",
        "--access-security-file", allowed, *common, name="a",
    )  # fmt: skip
    b = procs.start(
        "consumer", "-ic", f"{prefix}:a:1:output",
        "-sc", f"{prefix}:b:*:status", "-cc", f"{prefix}:b:*:control",
        "--access-security-file", refused, *common, name="b",
    )  # fmt: skip
    statuses = [f"{prefix}:a:1:status", f"{prefix}:b:1:status"]
    for channel in statuses:
        wait_for(lambda c=channel: pv_get(c), 30, f"{channel} up", procs=procs)
    # A start delay: both consumers connect before the first frame; a shutdown delay:
    # the source stays up while the test looks.
    sim = procs.start(
        "sim", "-cn", f"{prefix}:image", "-nx", "32", "-ny", "24", "-fps", "40", "-rt", "1",
        "-std", "3", "-shd", "120", name="sim",
    )  # fmt: skip
    for channel in statuses:
        wait_for(
            lambda c=channel: pv_get(c)["receiverStats"]["connected"],
            30,
            f"{channel} connected",
            procs=procs,
        )
    sim.wait_for_output(r"done, sent 40 frames", 30)
    for channel in statuses:
        assert wait_accounted([channel], frames, procs) == frames

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    dash = procs.start(
        "dashboard", f"{prefix}:a:*:status", f"{prefix}:b:*:status", "--max-id", "2",
        "--frames", f"{prefix}:image", "--web", "127.0.0.1:0", "--token-file", token_file,
        name="dashboard",
    )  # fmt: skip
    url = dash.wait_for_output(r"dashboard: (http://127\.0\.0\.1:\d+/) \(control token from")[1]
    page = new_page(browser, url)
    page.fill("#token", TOKEN)

    # The rows' counts are the status channels' counts.
    fields = {
        "received": ("receiverStats", "nReceived"),
        "processed": ("processorStats", "nProcessed"),
        "missed": ("processorStats", "nMissed"),
        "rejected": ("receiverStats", "nRejected"),
        "published": ("publisherStats", "nPublished"),
    }
    for channel in statuses:
        status = pv_get(channel).get()
        expected = {f: str(status[s][k]) for f, (s, k) in fields.items()}
        errors = status["processorStats"]["nErrors"] + status["receiverStats"]["nErrors"]
        expected["errors"] = str(errors)
        expected["processed"] = str(frames)
        wait_for(
            lambda c=channel, e=expected: {f: (row_values(page, c) or {}).get(f) for f in e} == e,
            15,
            f"the row of {channel} to show {expected}",
        )

    def click(key: str, command: str):
        return lambda: page.click(f"tr[data-key='{key}'] button[data-command='{command}']")

    # The access security of stage a lets this user configure it.
    page.fill(f"tr[data-key='{statuses[0]}'] input.config", '{"answer": 42}')
    text = answer_after(page, click(statuses[0], "configure"))
    assert text == f'{statuses[0]}: Configured: {{"answer": 42}}', text
    assert pv_get(f"{prefix}:a:1:control")["command"] == "configure"

    # That of stage b refuses the put: answered, nothing changed, b still runs.
    text = answer_after(page, click(statuses[1], "stop"))
    assert "refused by the stage's access security" in text and "not allowed" in text, text
    assert page.get_attribute("#answer", "data-ok") == "0"
    assert pv_get(f"{prefix}:b:1:control")["command"] == ""
    cli = pvhpc_control(f"{prefix}:b:1:control", "stop")
    assert cli.returncode == 1 and "refused by the stage's access security" in cli.stderr
    print(f"\nrefused put, as pvhpc control prints it:\n{cli.stderr}")
    assert b.popen.poll() is None
    assert pv_get(statuses[1])["processorStats"]["nProcessed"] == frames

    # Without the token the dashboard refuses, and sends nothing.
    other = new_page(browser, url)
    other.wait_for_selector(f"tr[data-key='{statuses[0]}'] button[data-command='stop']")
    text = answer_after(other, lambda: other.click(
        f"tr[data-key='{statuses[0]}'] button[data-command='stop']"
    ))  # fmt: skip
    assert text == "refused: a control action needs the dashboard's token", text
    assert pv_get(f"{prefix}:a:1:control")["command"] == "configure"
    assert a.popen.poll() is None

    # A read-only dashboard: no controls on the page, every action refused.
    ro = procs.start(
        "dashboard", f"{prefix}:a:*:status", "--max-id", "1", "--web", "127.0.0.1:0",
        "--read-only", name="read-only",
    )  # fmt: skip
    ro_url = ro.wait_for_output(r"dashboard: (http://127\.0\.0\.1:\d+/) \(read-only\)")[1]
    ro_page = new_page(browser, ro_url)
    ro_page.wait_for_selector(f"tr[data-key='{statuses[0]}']")
    assert ro_page.locator("button[data-command]").count() == 0
    assert ro_page.is_hidden("#control-box")
    request = urllib.request.Request(
        ro_url + "api/control",
        data=json.dumps({"key": statuses[0], "command": "stop"}).encode(),
        headers={"X-Pvhpc-Token": TOKEN, "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused_http:
        urllib.request.urlopen(request, timeout=10)
    assert refused_http.value.code == 403
    assert "read-only" in json.loads(refused_http.value.read())["message"]
    assert a.popen.poll() is None
