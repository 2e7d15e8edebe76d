#!/usr/bin/env python3
"""report_browser.py: a `tessera report` page opened in a real browser (Debian's chromium,
headless): no console errors (a control page with an error is caught first, so the check
can fail), the page's script ran, and every point of every plot read back from the rendered
DOM equals the value of the runs' ledger and metrics, placed where the plot's frame maps it;
the page's hover tip, pointed at each plot's first point (#selftest), says that point's values.

Two real `tessera train` runs: one priced, stopped at step 5 and resumed from its step-4
checkpoint (a restart with one step redone), one without a price. Run by meson in the cpu
suite (TS_BUILD_DIR set); exits 77 (skipped) with the reason when chromium is not installed.
"""
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

SKIP = 77
FLAGS = ("--vocab-size 64 --layers 2 --heads 2 --channels 64 --seq-len 16 --batch 2 "
         "--threads 1 --log-every 100 --steps 12 --eval-every 4 --eval-batches 2 "
         "--ckpt-every 4").split()


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def write_shard(path, n=20000, vocab=64, seed=1):
    """tests/launch/cli_util.c's pattern shard: short words of a small alphabet."""
    state = (seed * 2654435761 + 1) & 0xFFFFFFFF
    tok = []
    while len(tok) < n:
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        word = (state >> 28) % 8
        for k in range(4):
            if len(tok) < n:
                tok.append((word * 7 + k * 3) % vocab)
    header = [20240520, 1, n] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % n, *tok))


def tessera(build, *args):
    r = subprocess.run([os.path.join(build, "launch", "tessera"), *args],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail("tessera %s exited %d: %s" % (" ".join(args), r.returncode, r.stderr[-2000:]))
    return r


def chromium(exe, url, tmp):
    """The DOM after the page's scripts ran, and what the browser logged."""
    profile = tempfile.mkdtemp(dir=tmp)
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                        "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("chromium exited %d: %s" % (r.returncode, r.stderr[-2000:]))
    return r.stdout, r.stderr


def console_lines(log):
    """Messages the page's console got: chromium logs them as ...:INFO:CONSOLE:LINE] "text"
    (older versions: CONSOLE(LINE)]); an uncaught exception is one of them."""
    return [l for l in log.splitlines() if re.search(r":CONSOLE[:(]\d+", l) or "Uncaught" in l]


# ---- the DOM ----

class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def cls(self):
        return (self.attrs.get("class") or "").split()


class Tree(html.parser.HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "embed",
            "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.root = Node("#root", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        if tag not in self.VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is None:
            fail("</%s> closes nothing" % tag)
        self.cur = n.parent


def walk(n):
    yield n
    for c in n.children:
        yield from walk(c)


def read_plots(root, nruns):
    plots = {}
    for svg in walk(root):
        if svg.tag != "svg" or "plot" not in svg.cls():
            continue
        key = (svg.attrs["data-metric"], svg.attrs["data-axis"])
        frame = next(c for c in svg.children if "frame" in c.cls())
        f = {k: float(frame.attrs["data-" + k])
             for k in ("x0", "x1", "y0", "y1", "px0", "px1", "py0", "py1")}
        series = [c for c in svg.children if c.tag == "g" and "series" in c.cls()]
        if [int(s.attrs["data-run"]) for s in series] != list(range(nruns)):
            fail("%s: series %s, not one per run in order" %
                 (key, [s.attrs.get("data-run") for s in series]))
        out = []
        for s in series:
            pts = []
            for pl in (c for c in s.children if c.tag == "polyline"):
                xs = [float(v) for v in pl.attrs["data-x"].split()]
                ys = [float(v) for v in pl.attrs["data-y"].split()]
                px = [tuple(map(float, p.split(","))) for p in pl.attrs["points"].split()]
                if not len(xs) == len(ys) == len(px):
                    fail("%s: a polyline's data-x, data-y and points differ in length" % (key,))
                for x, y, (a, b) in zip(xs, ys, px):
                    ex = f["px0"] + (x - f["x0"]) / (f["x1"] - f["x0"]) * (f["px1"] - f["px0"])
                    ey = f["py0"] + (y - f["y0"]) / (f["y1"] - f["y0"]) * (f["py1"] - f["py0"])
                    if abs(a - ex) > 0.006 or abs(b - ey) > 0.006:
                        fail("%s: (%r, %r) drawn at (%g, %g), maps to (%g, %g)" %
                             (key, x, y, a, b, ex, ey))
                    pts.append((x, y))
            out.append({"missing": s.attrs.get("data-missing"), "points": pts})
        markers = [(m.cls()[1], int(m.attrs["data-run"]), float(m.attrs["data-x"]))
                   for m in svg.children if m.tag == "g" and "marker" in m.cls()]
        # the page's own hover at its first point (#selftest): the tip names the run and says
        # the point's exact values
        first = next((p for s in out for p in s["points"]), None)
        if first is not None:
            name = next(s.attrs["data-name"] for s in series if s.attrs.get("data-missing") is None)
            tip = svg.attrs.get("data-selftest", "")
            m = re.match(r"^(.*): (?:step (\S+)|(\S+) s), (\S+)$", tip)
            if not m or m.group(1) != name or \
                    float(m.group(2) or m.group(3)) != first[0] or float(m.group(4)) != first[1]:
                fail("%s: hovering its first point %r says %r" % (key, first, tip))
        plots[key] = {"series": out, "markers": markers}
    return plots


# ---- what the runs' files say (docs/report.md) ----

METRICS = ["train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "usd",
           "usd_per_1m_tokens"]


def finite(v):
    return v is not None and v == v and abs(v) != float("inf")


def truth(run):
    step = {m: [] for m in METRICS}
    time = {m: [] for m in METRICS}
    when = {}
    seg_t = seg_usd = ts = u = 0.0
    price_h = price_kwh = -1
    for line in open(os.path.join(run, "ledger.jsonl")):
        o = json.loads(line)
        if o["type"] == "segment_start":
            p = o["prices"]
            price_h = p["usd_per_device_hour"] if p["usd_per_device_hour"] is not None else -1
            price_kwh = p["usd_per_kwh"] if p["usd_per_kwh"] is not None else -1
            ts = seg_t + o["startup_s"]
            u = seg_usd + o["startup_s"] * o["devices"] / 3600.0 * price_h if price_h >= 0 \
                else float("nan")
        elif o["type"] == "step":
            pause = o.get("pause_s") or 0.0  # evals and saves before the step
            ts += pause + o["wall_s"]
            su = float("nan")
            if price_h >= 0:
                su = o["device_s"] / 3600.0 * price_h
                if o["energy_j"] is not None and price_kwh >= 0:
                    su += o["energy_j"] / 3.6e6 * price_kwh
            u += su + (pause * o["devices"] / 3600.0 * price_h if price_h >= 0 else 0)
            vals = {"tokens_per_s": o["tokens"] / o["wall_s"] if o["wall_s"] > 0 else None,
                    "mfu": o["mfu"], "usd": u,
                    "usd_per_1m_tokens": su / o["tokens"] * 1e6 if o["tokens"] > 0 else None}
            for m, v in vals.items():
                if finite(v):
                    step[m].append((float(o["step"]), v))
                    time[m].append((ts, v))
            when[o["step"]] = ts
        elif o["type"] == "segment":
            seg_t += o["wall_s"]
            seg_usd = seg_usd + o["usd"] if price_h >= 0 else float("nan")
            ts = seg_t
    for line in open(os.path.join(run, "metrics.jsonl")):
        o = json.loads(line)
        keys = ({"train_loss": "loss", "lr": "lr", "grad_norm": "grad_norm"} if "loss" in o
                else {"val_loss": "val_loss"} if "val_loss" in o else {})
        for m, k in keys.items():
            if finite(o[k]):
                step[m].append((float(o["step"]), o[k]))
                if o["step"] in when:
                    time[m].append((when[o["step"]], o[k]))
    return {"step": step, "time": time}


def main():
    build = os.environ.get("TS_BUILD_DIR")
    if not build:
        fail("TS_BUILD_DIR is not set (run the tests through meson)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("skip: chromium is not installed (Debian: apt-get install chromium; "
              "scripts/setup.sh installs it)")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="tessera-report-browser-")
    try:
        return check(build, exe, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(build, exe, tmp):
    # the console check sees an error when there is one
    control = os.path.join(tmp, "control.html")
    with open(control, "w") as f:
        f.write("<!DOCTYPE html><html><body><script>console.error('control-error');"
                "notAFunction();</script></body></html>\n")
    _, log = chromium(exe, "file://" + control, tmp)
    seen = console_lines(log)
    if not any("control-error" in l for l in seen) or not any("notAFunction" in l for l in seen):
        fail("the control page's console errors were not seen in chromium's log:\n" + log[-3000:])

    data = os.path.join(tmp, "train_000.bin")
    write_shard(data)
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    tessera(build, "train", *FLAGS, "--data", data, "--val-data", data, "--out", a,
            "--stop-after", "5", "--price-per-gpu-hour", "1.5")
    tessera(build, "train", "--data", data, "--out", a, "--threads", "1", "--overwrite",
            "--resume-from", os.path.join(a, "checkpoints", "step_00000004"))
    prices = os.path.join(tmp, "prices.json")
    with open(prices, "w") as f:
        f.write('{"usd_per_device_hour":{}}\n')
    tessera(build, "train", *FLAGS, "--data", data, "--val-data", data, "--out", b, "--lr",
            "1e-3", "--prices", prices)
    page = os.path.join(tmp, "report.html")
    tessera(build, "report", a, b, "--out", page)

    dom, log = chromium(exe, "file://" + page + "#selftest", tmp)
    errors = console_lines(log)
    if errors:
        fail("console messages:\n" + "\n".join(errors))
    tree = Tree()
    tree.feed(dom)
    html_el = next(n for n in walk(tree.root) if n.tag == "html")
    if html_el.attrs.get("data-ready") != "1":
        fail("the page's script did not run to its end (no data-ready on <html>)")
    plots = read_plots(tree.root, 2)
    if len(plots) != 2 * len(METRICS):
        fail("%d plots, expected %d" % (len(plots), 2 * len(METRICS)))
    checked = 0
    for r, run in enumerate((a, b)):
        t = truth(run)
        for m in METRICS:
            for axis in ("step", "time"):
                s = plots[(m, axis)]["series"][r]
                want = t[axis][m]
                if not want:
                    if s["missing"] is None:
                        fail("%s-%s run %d: no values in the files, yet a line" % (m, axis, r))
                    continue
                if s["points"] != want:
                    fail("%s-%s run %d: plotted %r\n  the files: %r" %
                         (m, axis, r, s["points"][:6], want[:6]))
                checked += len(want)
    if plots[("usd", "step")]["series"][1]["missing"] != "no price":
        fail("the unpriced run's cost line does not say 'no price'")
    marks = plots[("train_loss", "step")]["markers"]
    if ("restart", 0, 4.0) not in marks or ("stop", 0, 5.0) not in marks:
        fail("the restart at 4 and the stop at 5 are not marked: %r" % marks)
    print("ok: %d plotted points equal the runs' files; no console errors" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
