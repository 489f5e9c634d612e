"""The interactive page, driven for real in headless Chromium: clicks against tconv.explain."""

from __future__ import annotations

import html
import os
import shutil

import numpy as np
import pytest
from conftest import REQUIRE_PEERS, peer
from test_explain import keras_op, torch_op

from tconv.explanation import explain, render
from tconv.explanation.views import phase_table

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if REQUIRE_PEERS:
            pytest.fail(f"{CHROMIUM} is required (TCONV_REQUIRE_PEERS=1) but missing")
        pytest.skip("chromium not installed")
    sync = peer("playwright.sync_api")
    with sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, tmp_path, layer, x, at, name):
    path = tmp_path / f"{name}.html"
    path.write_text(render(layer, x, at), encoding="utf-8")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Any request other than the file itself would be a network access.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, errors, requests


def _highlighted(page, grid):
    return set(
        page.eval_on_selector_all(f'td.hl[data-grid="{grid}"]', "e => e.map(t => t.dataset.pos)")
    )


def _plane(pos, rank):
    return ",".join(map(str, pos[max(0, rank - 2) :]))


CASES = {
    "2d": (lambda: keras_op((4, 4), 6, 5, 3, 2), (0, 3, 4, 2), [(2, 2), (3, 3), (7, 7), (0, 5)]),
    "1d": (lambda: keras_op((5,), 3, 2, 5, 3), (1, 7, 1), [(0,), (6,), (14,)]),
    "3d-groups-nchw": (
        lambda: torch_op((2, 2, 3), 6, 3, 2, 2, p=0, op=1, groups=3),
        (0, 1, 2, 3, 4),
        [(0, 0), (4, 6), (3, 2)],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_click_highlights_and_value_match_explain(browser, tmp_path, name):
    make, at, clicks = CASES[name]
    layer, x = make()
    page, errors, requests = _open(browser, tmp_path, layer, x, at, name)
    rank = layer.rank
    fixed = list(at[2 : 2 + rank - 2] if layer.channels_first else at[1 : 1 + rank - 2])
    for channel in (None, 1):
        if channel is not None:
            page.select_option("#channel", str(channel))
        f = at[1 if layer.channels_first else -1] if channel is None else channel
        for click in clicks:
            page.click(f'td.cell[data-grid="out"][data-pos="{",".join(map(str, click))}"]')
            o = [*fixed, *click]
            index = (at[0], f, *o) if layer.channels_first else (at[0], *o, f)
            e = explain(layer, x, index)
            assert _highlighted(page, "in") == {_plane(t.input_position, rank) for t in e.taps}
            assert _highlighted(page, "k") == {_plane(t.kernel_position, rank) for t in e.taps}
            shown = page.inner_text("#value")
            assert float(shown) == float(e.value)
            head = page.inner_text("#element")
            taps = len(e.taps)
            assert f"y[{', '.join(map(str, e.at))}]: {taps} tap{'' if taps == 1 else 's'}," in head
            # The filter's role follows the channel selector (it used to stay at the first).
            assert page.inner_text("#role") == e.filter_role()
            lines = page.inner_text("#lines")
            assert all(t.input_index in lines for t in e.taps)
    assert errors == [] and requests == [f"file://{tmp_path / name}.html"]
    page.close()


def test_phase_buttons_mark_phase_cells(browser, tmp_path):
    layer, x = keras_op((4, 4), 2, 3, 3, 2)
    page, errors, _ = _open(browser, tmp_path, layer, x, (0, 4, 4, 0), "phases")
    table = phase_table(layer.geometry((4, 4)))
    for ph in table:
        page.click("#next-phase")
        green = set(
            page.eval_on_selector_all('td.ph[data-grid="out"]', "e => e.map(t => t.dataset.pos)")
        )
        expected = {f"{r},{c}" for r, c in np.ndindex(8, 8) if (r % 2, c % 2) == ph.residue}
        assert green == expected
        taps = set(
            page.eval_on_selector_all('td.ph[data-grid="k"]', "e => e.map(t => t.dataset.pos)")
        )
        assert taps == {",".join(map(str, j)) for j in ph.taps}
    assert errors == []
    page.close()


def test_notebook_repr_is_the_explanation_text():
    layer, x = keras_op((3, 3), 2, 2, 3, 2)
    e = explain(layer, x, (0, 2, 2, 1))
    fragment = e._repr_html_()
    assert fragment.startswith('<pre class="tconv-explanation">') and "<script" not in fragment
    assert html.unescape(fragment.removeprefix('<pre class="tconv-explanation">')) == (
        e.to_text() + "</pre>"
    )
