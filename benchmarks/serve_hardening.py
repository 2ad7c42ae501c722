"""Issue 25's hostile clients against a real ``cambrian serve --model tiny`` subprocess on 127.0.0.1: the aspect-ratio
image bomb (20000 x 1 and 100000 x 1 PNG data URLs), 140 idle sockets, and an 18 MB prompt with a concurrent "hi".
Prints the server's peak RSS above its baseline for each (the kernel's VmHWM, reset before each attack), and kills
the server past 3 GiB RSS so it never takes a shared machine.

    python benchmarks/serve_hardening.py ours                                      # this tree
    PYTHONPATH=/path/to/old/tree python benchmarks/serve_hardening.py before       # another tree, same command
    python benchmarks/serve_hardening.py lifted --max-image-aspect 1000000         # the letterbox itself, unrefused

Arguments after the label go to ``cambrian serve``. Linux only (``/proc``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from PIL import Image

LABEL, EXTRA = sys.argv[1], sys.argv[2:]
LIMIT = 3 << 30  # kill the server past 3 GiB RSS: never let it take the shared machine
KEY = "sk-probe"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def start():
    port = free_port()
    env = {**os.environ, "CAMBRIAN_API_KEY": KEY}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cambrian.cli.main",
            "serve",
            "--model",
            "tiny",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--max-body-mb",
            "32",
            *EXTRA,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            return p, url, port
        except Exception:  # noqa: BLE001 - not up yet: any failure means try again
            time.sleep(0.1)
    raise SystemExit("server did not start")


def post(url, body, timeout=300):
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()[:200]
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200]
    except Exception as e:  # noqa: BLE001 - a probe records whatever the attack caused
        return type(e).__name__, b""


def png_url(w, h):
    b = io.BytesIO()
    Image.new("1", (w, h), 1).save(b, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(b.getvalue()).decode(), len(b.getvalue())


def img_req(url):
    return {
        "model": "tiny",
        "max_tokens": 2,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what?"}],
            }
        ],
    }


def watched(p, fn):
    """Run fn() while watching the server's RSS; kill it past LIMIT. -> (result, peak delta bytes, killed)."""
    with open(f"/proc/{p.pid}/clear_refs", "w") as f:
        f.write("5")
    base = status_kb(p.pid, "VmRSS")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    t.start()
    killed = False
    while t.is_alive():
        if p.poll() is not None:
            break
        if status_kb(p.pid, "VmRSS") > LIMIT:
            p.kill()
            killed = True
            break
        time.sleep(0.005)
    peak = status_kb(p.pid, "VmHWM") if p.poll() is None else LIMIT
    t.join(60)
    return box.get("r"), peak - base, killed


out = {"label": LABEL, "extra": EXTRA}
p, url, port = start()
print(f"[{LABEL}] server pid {p.pid} base RSS {status_kb(p.pid, 'VmRSS') / 2**20:.0f} MiB", flush=True)
post(url, img_req(png_url(40, 30)[0]))
# ---- item 1: the aspect-ratio bomb
for w in (20_000, 100_000):
    u, nbytes = png_url(w, 1)
    t0 = time.monotonic()
    r, delta, killed = watched(p, lambda u=u, url=url: post(url, img_req(u)))
    out[f"bomb_{w}x1"] = dict(
        png_bytes=nbytes,
        status=r[0] if r else None,
        peak_delta_mib=round(delta / 2**20),
        killed_at_3GiB=killed,
        seconds=round(time.monotonic() - t0, 2),
    )
    print(f"[{LABEL}] {w}x1 ({nbytes} B PNG): {out[f'bomb_{w}x1']}", flush=True)
    if killed or p.poll() is not None:
        p.wait()
        p, url, port = start()
        post(url, img_req(png_url(40, 30)[0]))
# ---- item 2: 140 idle sockets
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(140)]
t0 = time.monotonic()
st = post(url, {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
out["idle_140"] = {"authorised_status": st[0], "seconds": round(time.monotonic() - t0, 3)}
deadline = time.monotonic() + 20
for s in idle:
    s.settimeout(max(0.01, deadline - time.monotonic()))
open_after = 0
for s in idle:
    try:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        if s.recv(1) != b"":
            open_after += 1
    except TimeoutError:
        open_after += 1
    except OSError:
        pass
out["idle_140"]["still_open_after_20s"] = open_after
for s in idle:
    s.close()
print(f"[{LABEL}] idle: {out['idle_140']}", flush=True)
time.sleep(1)
# ---- item 3: an 18 MB prompt and a concurrent "hi"
huge = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "lorem ipsum dolor " * 1_000_000}]}
res = {}


def both():
    th = threading.Thread(target=lambda: res.setdefault("huge", post(url, huge)))
    th.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    res["hi"] = post(url, {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    res["hi_s"] = round(time.monotonic() - t0, 3)
    th.join()
    return res


r, delta, killed = watched(p, both)
out["huge_prompt_18MB"] = {
    "huge_status": res.get("huge", [None])[0],
    "hi_status": res.get("hi", [None])[0],
    "hi_seconds_after_huge": res.get("hi_s"),
    "peak_delta_mib": round(delta / 2**20),
    "killed": killed,
}
print(f"[{LABEL}] huge prompt: {out['huge_prompt_18MB']}", flush=True)
p.terminate()
p.wait(30)
print(json.dumps(out))
