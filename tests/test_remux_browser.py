"""A real browser plays a cut whose pictures decode with two sets of parameters.

The cut copies conforming clips with their own SPS/PPS (id 0) and joins them to pieces and
seams it encoded (id 1); its sample description lists both. Chromium (tests/browser.py)
seeks into every part and reads its pixels back, and plays across the joins.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest
from browser import chromium

from storyboard.cutter import CardSpec, CutSpec, Segment, cut
from storyboard.media import codecs, mp4

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H, FPS = 320, 180, 24
TAGS = "format=yuv420p,setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-bf", "0", "-g", "12"]  # fmt: skip

PAGE = """<!doctype html><meta charset="utf-8">
<video id="v" src="cut.mp4" muted playsinline preload="auto"></video>
<canvas id="c" width="320" height="180"></canvas>"""

# Play the whole video; for every frame shown, its media time and the colour at its centre.
PLAY = """
const done = arguments[arguments.length - 1];
const v = document.getElementById('v'), g = document.getElementById('c').getContext('2d');
const seen = [];
const frame = (now, meta) => {
  g.drawImage(v, 0, 0, 320, 180);
  seen.push([meta.mediaTime, ...Array.from(g.getImageData(160, 90, 1, 1).data.slice(0, 3))]);
  v.requestVideoFrameCallback(frame);
};
v.requestVideoFrameCallback(frame);
v.addEventListener('ended', () => done([seen, v.error && v.error.code]), {once: true});
v.addEventListener('error', () => done([seen, v.error && v.error.code]), {once: true});
v.play().catch(e => done([seen, String(e)]));
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def solid(path: Path, colour: str, size: str, seconds: float) -> Path:
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"color=c={colour}:s={size}:r={FPS}:d={seconds}", "-vf", f"{TAGS},setsar=1",
         *X264, str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.mark.slow
def test_chromium_decodes_copied_clips_and_encoded_pieces_in_one_cut(
    tmp_path: Path, served: str
) -> None:
    red = solid(tmp_path / "red.mp4", "0xff0000", f"{W}x{H}", 1)  # conforms: copied
    blue = solid(tmp_path / "blue.mp4", "0x0000ff", "160x90", 1)  # another size: encoded
    card = Segment(None, CardSpec("", 1.0, background="#00ff00"), key="green")
    segments = [
        Segment(red, None, key="red"),
        card,
        Segment(red, None, key="red", transition="crossfade", transition_seconds=0.25),
        Segment(blue, None, key="blue"),
    ]
    out = tmp_path / "cut.mp4"
    assert cut(segments, CutSpec(W, H, FPS), out, tmp_path / "w") == 3.75
    record = codecs.parse_avcc(mp4.read(out).tracks[0].config)
    assert sorted(codecs.parse_sps(s).sps_id for s in record.sps) == [0, 1, 2]
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")

    with chromium() as driver:
        driver.get(f"{served}/index.html")
        seen, error = driver.execute_async_script(PLAY)
    assert error is None
    # Headless playback may skip frames, but it shows the whole cut, part after part.
    assert len(seen) > 40 and seen[-1][0] > 3.6
    parts = [
        (0.0, 1.0, (255, 0, 0)),  # copied red (parameter sets 0)
        (1.0, 2.0, (0, 255, 0)),  # the card, encoded (parameter sets 1)
        (2.0, 2.75, (255, 0, 0)),  # copied red again
        (3.0, 3.75, (0, 0, 255)),  # blue, another size, encoded, after the crossfade
    ]
    for first, last, colour in parts:
        shown = [rgb for t, *rgb in seen if first + 0.05 < t < last - 0.05]
        assert shown, (first, last, seen)
        for rgb in shown:
            assert max(abs(g - c) for g, c in zip(rgb, colour, strict=True)) < 40, (first, rgb)
    # The crossfade between them, a seam (parameter sets 2): red turning into blue.
    mixed = [rgb for t, *rgb in seen if 2.78 < t < 2.97]
    assert mixed, seen
    for r, g, b in mixed:
        assert g < 40 and abs(r + b - 255) < 60, (r, g, b)
