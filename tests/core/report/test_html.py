"""The self-contained HTML report (issue 23, item 2): every section present, every figure inlined,
no external reference; rendered by a real headless Chromium (skipped when none is installed), whose
network log shows the page made no request."""
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from mtl_platform import runs
from mtl_platform.cli import main
from mtl_platform.report import build_report, write_report
from mtl_platform.report.html import CSP, SECTIONS

from report_runs import fake_run

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)),
               None)
QUIET_BROWSER = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-domain-reliability", "--disable-client-side-phishing-detection"]


class Page(HTMLParser):
    """Tags, attributes that reference something, and section ids of a page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.references, self.sections, self.images, self.csp = [], [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href", "srcset", "action", "data", "poster", "background"):
            if key in attrs:
                self.references.append(attrs[key])
        if "style" in attrs and "url(" in attrs["style"]:
            self.references.append(attrs["style"])
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "content-security-policy":
            self.csp = attrs["content"]


@pytest.fixture
def two_group_report(tmp_path):
    """Two weightings x two seeds of a 2-task problem, with metrics, diagnostics and configs on disk."""
    results = []
    for label, finals in (("hps + ew", [(1.0, 3.0), (1.2, 2.8)]), ("hps + mgda", [(2.0, 1.5), (2.2, 1.4)])):
        for seed, final in enumerate(finals):
            result = fake_run(tmp_path, label.replace(" ", "").replace("+", "_"), seed, final, path=[(5, 5)],
                              stl=(1.5, 2.0))
            result["label"], result["group"] = label, label
            run_dir = tmp_path / result["run_dir"]
            rows = runs.read_jsonl(run_dir / runs.METRICS_FILE)
            for r in rows:
                r["train"] = {"loss": {"f1": 1.0 / (r["epoch"] + 1), "f2": 2.0 / (r["epoch"] + 1)}}
            (run_dir / runs.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
            (run_dir / runs.DIAGNOSTICS_FILE).write_text(json.dumps(
                {"step": 1, "conflict": 1.0, "cos": {"f1|f2": -0.2}, "norm": {"f1": 1, "f2": 1},
                 "weights": {"f1": 0.5, "f2": 1.5}, "stage": "main"}) + "\n")
            (run_dir / runs.CONFIG_FILE).write_text(f"weighting: {{name: {label.split()[-1]}}}\n# <not a tag>\n")
            (run_dir / runs.RESULTS_FILE).write_text(json.dumps(result))
            results.append(result)
    return build_report(results)


def test_the_page_is_self_contained_with_every_section(two_group_report, tmp_path):
    (path,) = write_report(two_group_report, tmp_path / "out", ["html"])
    assert path.name == "report.html"
    page = Page(path.read_text())
    assert page.sections == list(SECTIONS)
    assert page.csp == CSP == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert page.references and all(r.startswith(("data:", "#")) for r in page.references), page.references
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    assert len(page.images) == 4 and all(i.startswith("data:image/png;base64,") for i in page.images)  # Δ, curves, dynamics, Pareto
    text = path.read_text()
    assert "&lt;not a tag&gt;" in text and "<not a tag>" not in text  # the config is escaped
    for needle in ("UNSAFE", "Welch", "hps + mgda", "seed", "Δp"):
        assert needle in text


def test_mtl_report_html_flag_writes_the_page(two_group_report, tmp_path, capsys):
    run_dirs = [d for g in two_group_report["groups"] for d in g["run_dirs"]]
    main(["report", *run_dirs, "--out", str(tmp_path / "rep"), "--format", "md", "--html"])
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.html", "report.md"]
    assert Page((tmp_path / "rep" / "report.html").read_text()).sections == list(SECTIONS)


def page_requests(page, tmp_path) -> tuple[str, set[str]]:
    """Render ``page`` in headless Chromium; return its DOM and the URLs the page itself requested
    (the net log's requests with an initiator; the browser's own service requests have none)."""
    log = tmp_path / f"{page.stem}.netlog.json"
    done = subprocess.run([BROWSER, *QUIET_BROWSER, f"--log-net-log={log}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    text = log.read_text()
    try:
        events = json.loads(text)["events"]
    except json.JSONDecodeError:  # a log closed without its final bracket
        events = json.loads(text.rstrip().rstrip(",") + "]}")["events"]
    urls = {e["params"]["url"] for e in events
            if "url" in e.get("params", {}) and e["params"].get("initiator", "not an origin") != "not an origin"}
    return done.stdout, urls


@pytest.mark.skipif(BROWSER is None, reason="no chromium/chrome on PATH (apt-get install chromium)")
def test_a_headless_browser_renders_every_section_and_requests_nothing(two_group_report, tmp_path):
    (path,) = write_report(two_group_report, tmp_path / "out", ["html"])
    dom, requested = page_requests(path, tmp_path)
    rendered = Page(dom)
    assert rendered.sections == list(SECTIONS)
    assert len(rendered.images) == 4
    for title in SECTIONS.values():
        assert f">{title}</h2>" in dom.replace("&amp;", "&")
    assert requested == set(), requested
    # the check can fail: a page with an external image (and no CSP) is seen requesting it
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"></body></html>')
    assert page_requests(control, tmp_path)[1] == {"http://example.invalid/x.png"}


def test_a_run_with_report_formats_html_writes_the_page(write_config, tmp_path, one_thread):
    from mtl_platform import session

    results = session.train(write_config({"baselines.stl": True, "train.epochs": 1, "report": {"formats": ["html"]}}),
                            progress=False, echo=lambda *a, **k: None)
    run_dir = tmp_path / results["run_dir"]
    assert sorted(p.name for p in run_dir.glob("report*")) == ["report.html"]
    page = Page((run_dir / "report.html").read_text())
    assert page.sections == list(SECTIONS)
    # Δ, curves, the one run in task space; 6 steps log no diagnostics (every 50): a note instead of a figure
    assert len(page.images) == 3 and "nothing to draw" in (run_dir / "report.html").read_text()
