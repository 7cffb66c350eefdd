"""``storyboard review --serve`` against a real server on 127.0.0.1 (issue 11 item 2 and
"Nobody else gets in").

A tiny storyboard is rendered once with the free preview backend, in a git repository: a
title card, ``sea`` with two takes that ``more`` extends, and ``kite`` with two takes and its
own ``select: 1``. Requests go through httpx (and http.client where a path must reach the
server exactly as written); every refused request is checked to have changed nothing: the
storyboard's bytes and mtime, the cut, the page.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run_cli

from storyboard.media.probe import probe
from storyboard.pipeline import plan_build
from storyboard.review.server import MAX_BODY, ChangeEvent, PortUnavailable, ReviewServer

pytestmark = pytest.mark.slow

BOARD = """\
# a tiny board for the review server
storyboard: 1
defaults:
  model: skyreels-v4-fast
  resolution: 480p
  duration: 3
output:
  resolution: 480p
  fps: 24
shots:
  - id: open
    card: {text: "Review", duration: 1.0}
  - id: sea
    prompt: a lighthouse at dusk
    takes: 2          # two variants; the cut takes the first (the default)
    transition: {type: crossfade, duration: 0.5}
  - id: more
    extends: sea
    prompt: the light turns
  - id: kite
    prompt: "a red kite over a field"
    takes: 2
    select: 1         # the kite's pick
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered project (never served or changed itself: tests copy it)."""
    from storyboard.pipeline import build

    root = tmp_path_factory.mktemp("review-server") / "project"
    root.mkdir()
    file = root / "storyboard.yaml"
    file.write_text(BOARD, encoding="utf-8")
    git(root, "init", "-q", ".")
    git(root, "add", "storyboard.yaml")
    git(root, "commit", "-q", "-m", "the board")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STORYBOARD_CACHE", raising=False)
        report = build(file)
    assert not report.missing and report.cut is not None
    return root


def _copy(rendered: Path, into: Path) -> Path:
    root = into / "project"
    shutil.copytree(rendered, root, symlinks=True)
    return root / "storyboard.yaml"


@pytest.fixture(scope="module")
def shared(
    rendered: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ReviewServer, Path]]:
    """One server for the requests that must change nothing."""
    file = _copy(rendered, tmp_path_factory.mktemp("shared"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STORYBOARD_CACHE", raising=False)
        server = ReviewServer(file)
    with server:
        yield server, file


@pytest.fixture
def own(rendered: Path, tmp_path: Path) -> Iterator[tuple[ReviewServer, Path, list[ChangeEvent]]]:
    """A server on a copy of the project of its own, for a test that writes."""
    file = _copy(rendered, tmp_path)
    events: list[ChangeEvent] = []
    with ReviewServer(file, on_change=events.append) as server:
        yield server, file, events


def base(server: ReviewServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def good_headers(server: ReviewServer) -> dict[str, str]:
    return {"X-Storyboard-Token": server.token, "Origin": base(server)}


def state(server: ReviewServer, file: Path) -> dict[str, Any]:
    """What a refused request must not change."""
    cut = plan_build(file).cut
    index = server.folder / "index.html"
    return {
        "yaml": file.read_bytes(),
        "yaml mtime": file.stat().st_mtime_ns,
        "cut": hashlib.sha256(cut.read_bytes()).hexdigest(),
        "cut mtime": cut.stat().st_mtime_ns,
        "page": index.read_bytes(),
        "folder": sorted(p.name for p in file.parent.iterdir()),
    }


def raw_get(server: ReviewServer, target: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (httpx would normalise ``..`` away)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{server.port}")
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def selected_take(page: str, shot: str) -> int:
    """The take the page marks selected in ``shot``'s article."""
    found_article = re.search(rf'<article [^>]*data-shot="{shot}"[^>]*>(.*?)</article>', page, re.S)
    assert found_article is not None
    article = found_article.group(1)
    found = re.findall(r'<figure class="take selected[^"]*" data-take="(\d+)"', article)
    assert len(found) == 1, article
    return int(found[0])


# -- the server ----------------------------------------------------------------------------------


def test_the_url_carries_a_fresh_token_and_the_socket_is_loopback_only(
    shared: tuple[ReviewServer, Path],
) -> None:
    server, _ = shared
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/\?token=[\w-]{{43}}", server.url)
    assert server.token in server.url
    assert server._httpd.server_address[0] == "127.0.0.1"
    assert server.folder.name == "storyboard.preview.review"


def test_the_page_is_served_with_its_buttons(shared: tuple[ReviewServer, Path]) -> None:
    server, _ = shared
    answer = httpx.get(server.url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cross-origin-resource-policy"] == "same-origin"
    page = answer.text
    assert "select take 2" in page and 'data-shot="kite"' in page
    assert selected_take(page, "kite") == 1
    assert server.token not in page
    media = re.findall(r'src="(media/[0-9a-f]+\.mp4)"', page)
    assert media
    for name in media:
        assert httpx.head(f"{base(server)}/{name}").headers["content-type"] == "video/mp4"


def _post(
    server: ReviewServer,
    body: bytes | str | Any,
    *,
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    content_type: str = "application/json",
    path: str = "/api/select",
) -> httpx.Response:
    sent = {**good_headers(server), "Content-Type": content_type, **(headers or {})}
    for name in drop:
        sent.pop(name)
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(base(server) + path, content=data, headers=sent)


REFUSED: dict[str, tuple[Callable[[ReviewServer], httpx.Response], int]] = {
    "no token": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, drop=("X-Storyboard-Token",)),
        401,
    ),
    "wrong token": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"X-Storyboard-Token": "x" * 43}),
        401,
    ),
    "token in the query only": (
        lambda s: httpx.post(
            f"{base(s)}/api/select?token={s.token}",
            json={"shot": "kite", "take": 2},
            headers={"Origin": base(s)},
        ),
        401,
    ),
    "foreign origin": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"Origin": "https://evil.example"}),
        403,
    ),
    "null origin": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"Origin": "null"}),
        403,
    ),
    "other port origin": (
        lambda s: _post(
            s, {"shot": "kite", "take": 2}, headers={"Origin": f"http://127.0.0.1:{s.port + 1}"}
        ),
        403,
    ),
    "cross-site fetch": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"Sec-Fetch-Site": "cross-site"}),
        403,
    ),
    "foreign host": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"Host": "evil.example"}),
        421,
    ),
    "rebound host with the port": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, headers={"Host": f"evil.example:{s.port}"}),
        421,
    ),
    "loopback host on another port": (
        lambda s: _post(
            s, {"shot": "kite", "take": 2}, headers={"Host": f"127.0.0.1:{s.port + 1}"}
        ),
        421,
    ),
    "missing shot": (lambda s: _post(s, {"shot": "nope", "take": 1}), 404),
    "path-like shot": (lambda s: _post(s, {"shot": "../storyboard.yaml", "take": 1}), 404),
    "absolute path shot": (lambda s: _post(s, {"shot": "/etc/passwd", "take": 1}), 404),
    "yaml as shot": (lambda s: _post(s, {"shot": "kite\n    select: 2", "take": 2}), 404),
    "card": (lambda s: _post(s, {"shot": "open", "take": 1}), 422),
    "take out of range": (lambda s: _post(s, {"shot": "kite", "take": 3}), 422),
    "take zero": (lambda s: _post(s, {"shot": "kite", "take": 0}), 422),
    "negative take": (lambda s: _post(s, {"shot": "kite", "take": -1}), 422),
    "string take": (lambda s: _post(s, {"shot": "kite", "take": "2"}), 400),
    "bool take": (lambda s: _post(s, {"shot": "kite", "take": True}), 400),
    "float take": (lambda s: _post(s, {"shot": "kite", "take": 2.0}), 400),
    "extra key": (lambda s: _post(s, {"shot": "kite", "take": 2, "path": "x"}), 400),
    "duplicate key": (lambda s: _post(s, '{"shot": "sea", "shot": "kite", "take": 2}'), 400),
    "a list": (lambda s: _post(s, [{"shot": "kite", "take": 2}]), 400),
    "not json": (lambda s: _post(s, "shot=kite&take=2"), 400),
    "not utf-8": (lambda s: _post(s, b'{"shot": "\xff", "take": 2}'), 400),
    "form content type": (
        lambda s: _post(s, {"shot": "kite", "take": 2}, content_type="text/plain"),
        415,
    ),
    "oversized body": (
        lambda s: _post(s, {"shot": "kite", "take": 2, "pad": "x" * MAX_BODY}),
        413,
    ),
    "another path": (lambda s: _post(s, {"shot": "kite", "take": 2}, path="/api/other"), 404),
    "a file path": (lambda s: _post(s, {"shot": "kite", "take": 2}, path="/index.html"), 404),
    "needs a render downstream": (lambda s: _post(s, {"shot": "sea", "take": 2}), 409),
    "put": (lambda s: httpx.put(f"{base(s)}/api/select", headers=good_headers(s)), 405),
    "delete": (lambda s: httpx.delete(f"{base(s)}/index.html", headers=good_headers(s)), 405),
    "preflight": (
        lambda s: httpx.options(
            f"{base(s)}/api/select",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ),
        401,
    ),
    "get the api without token": (lambda s: httpx.get(f"{base(s)}/api/select"), 401),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_request_changes_nothing(
    shared: tuple[ReviewServer, Path], case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    server, file = shared
    send, status = REFUSED[case]
    before = state(server, file)
    answer = send(server)
    assert answer.status_code == status, answer.text
    assert state(server, file) == before
    assert server.token not in answer.text
    assert "access-control-allow-origin" not in answer.headers
    if answer.headers.get("content-type") == "application/json":
        assert answer.json()["error"]
    assert capfd.readouterr().err == ""


def test_a_refusal_says_why_and_what_helps(shared: tuple[ReviewServer, Path]) -> None:
    server, _ = shared
    answer = _post(server, {"shot": "sea", "take": 2})
    data = answer.json()
    assert "more builds on sea and has no clip made from its take 2" in data["error"]
    assert data["hint"].startswith("storyboard render")
    assert "token" in _post(server, {}, drop=("X-Storyboard-Token",)).json()["error"]


def test_any_request_under_a_foreign_host_is_refused_first(
    shared: tuple[ReviewServer, Path],
) -> None:
    server, _ = shared
    for host in ("evil.example", f"evil.example:{server.port}", f"127.0.0.1.nip.io:{server.port}"):
        assert httpx.get(server.url, headers={"Host": host}).status_code == 421
        assert raw_get(server, "/index.html", host=host)[0] == 421
    assert httpx.get(f"http://localhost:{server.port}/").status_code == 200
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("GET", "/", skip_host=True)
    conn.endheaders()  # no Host at all
    assert conn.getresponse().status == 421
    conn.close()


TRAVERSALS = [
    "/../../storyboard.yaml",
    "/../storyboard.yaml",
    "/media/../../../storyboard.yaml",
    "/%2e%2e/%2e%2e/storyboard.yaml",
    "/%2E%2E%2F%2E%2E%2Fstoryboard.yaml",
    "/media/..%2f..%2f..%2fstoryboard.yaml",
    "/.%2e/.%2e/storyboard.yaml",
    "/%252e%252e/%252e%252e/storyboard.yaml",
    "/..%5c..%5cstoryboard.yaml",
    "//etc/passwd",
    "/%00index.html",
    "/index.html%00.jpg",
    "/media/",
    "/media",
    "/./index.html",
    "/.storyboard",
    "/%ff",
    "http://evil.example/index.html",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_nothing_outside_the_folder_is_served(
    shared: tuple[ReviewServer, Path], target: str
) -> None:
    server, _ = shared
    status, body = raw_get(server, target)
    assert 400 <= status < 500, (status, body[:200])
    assert b"storyboard: 1" not in body and b"root:" not in body


def test_links_out_of_the_folder_and_hidden_files_are_not_served(
    shared: tuple[ReviewServer, Path],
) -> None:
    server, file = shared
    out = server.folder / "leak.yaml"
    inside = server.folder / "again.html"
    hidden = server.folder / ".secret.tmp"
    out.symlink_to(file)
    inside.symlink_to(server.folder / "index.html")
    hidden.write_text("hidden")
    try:
        assert raw_get(server, "/leak.yaml")[0] == 404
        assert raw_get(server, "/.secret.tmp")[0] == 404
        status, body = raw_get(server, "/again.html")
        assert status == 200 and body == (server.folder / "index.html").read_bytes()
    finally:
        for link in (out, inside, hidden):
            link.unlink()


def test_byte_ranges_let_a_video_seek(shared: tuple[ReviewServer, Path]) -> None:
    server, _ = shared
    page = httpx.get(server.url).text
    name = re.findall(r'src="(media/[0-9a-f]+\.mp4)"', page)[0]
    data = (server.folder / name).read_bytes()
    size = len(data)
    url = f"{base(server)}/{name}"
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    for asked, (start, end) in {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-50": (size - 50, size - 1),
        f"bytes={size - 10}-{size + 500}": (size - 10, size - 1),
        "bytes=0-0": (0, 0),
    }.items():
        part = httpx.get(url, headers={"Range": asked})
        assert part.status_code == 206, asked
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert part.content == data[start : end + 1]
        assert int(part.headers["content-length"]) == end - start + 1
    too_far = httpx.get(url, headers={"Range": f"bytes={size}-"})
    assert too_far.status_code == 416 and too_far.headers["content-range"] == f"bytes */{size}"
    several = httpx.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data
    stale = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    fresh = httpx.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
    assert fresh.status_code == 206 and fresh.content == data[:10]
    head = httpx.head(url, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == "10"
    again = httpx.get(url, headers={"If-None-Match": whole.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_missing_after_names_what_a_choice_would_need_rendered(
    shared: tuple[ReviewServer, Path],
) -> None:
    from storyboard.cache import Store
    from storyboard.selecting import missing_after

    _, file = shared
    plan = plan_build(file)
    store = Store.for_storyboard(plan.board.path)
    assert missing_after(plan, store, "sea", 2) == ("more",)
    assert missing_after(plan, store, "sea", 1) == ()
    assert missing_after(plan, store, "kite", 2) == ()
    with pytest.raises(ValueError, match="2 take"):
        missing_after(plan, store, "kite", 3)
    with pytest.raises(KeyError):
        missing_after(plan, store, "nope", 1)


def test_a_take_the_cut_cannot_use_without_a_render_is_disabled_on_the_page(
    shared: tuple[ReviewServer, Path],
) -> None:
    page = httpx.get(shared[0].url).text
    sea = page[page.index('id="shot-sea"') : page.index('id="shot-more"')]
    # sea's take 2 has no `more` made from it: said before anyone clicks, not after a 409.
    assert re.search(r'<button[^>]*class="select blocked" disabled>select take 2</button>', sea)
    assert "needs a render first: more build on this shot" in sea
    kite = page[page.index('id="shot-kite"') :]
    assert re.search(r'<button[^>]*class="select" data-shot="kite" data-take="2">', kite)


# -- writes ---------------------------------------------------------------------------------------


def test_a_pick_changes_the_select_line_and_re_stitches_the_cut(
    own: tuple[ReviewServer, Path, list[ChangeEvent]],
) -> None:
    server, file, events = own
    root = file.parent
    cut = plan_build(file).cut
    cut_before = cut.read_bytes()
    assert git(root, "diff") == ""
    answer = _post(server, {"shot": "kite", "take": 2})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data == {
        "shot": "kite",
        "take": 2,
        "old": 1,
        "cut": str(cut),
        "seconds": pytest.approx(probe(cut).duration, abs=0.1),
    }
    diff = git(root, "diff", "-U0", "--no-color").splitlines()
    changes = [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changes == [
        "-    select: 1         # the kite's pick",
        "+    select: 2         # the kite's pick",
    ]
    assert git(root, "diff", "--numstat").split()[:2] == ["1", "1"]
    # The cut is the new one, and the plan says it is up to date.
    assert cut.read_bytes() != cut_before
    result = run_cli("plan", "--json", str(file))
    assert result.code == 0, result.err
    plan = result.json()
    assert plan["stitch"] == "fresh"
    assert {s["id"]: s["select"] for s in plan["shots"]}["kite"] == 2
    # The page was rewritten and marks the new take.
    page = httpx.get(server.url).text
    assert selected_take(page, "kite") == 2
    assert events == [ChangeEvent("kite", 1, 2, cut, data["seconds"])]
    # The same pick again changes nothing; the old one puts the file back as it was.
    mtime = file.stat().st_mtime_ns
    same = _post(server, {"shot": "kite", "take": 2})
    assert same.status_code == 200 and same.json()["old"] == 2
    assert file.stat().st_mtime_ns == mtime
    back = _post(server, {"shot": "kite", "take": 1})
    assert back.status_code == 200 and back.json()["old"] == 2
    assert git(root, "diff") == ""
    assert cut.read_bytes() == cut_before
    assert selected_take(httpx.get(server.url).text, "kite") == 1
    assert len(events) == 2


def test_the_page_script_s_request_shape_is_accepted(
    own: tuple[ReviewServer, Path, list[ChangeEvent]],
) -> None:
    """What the page's fetch sends: its origin as localhost, the token header, a JSON body
    with a charset, no Sec-Fetch-Site from a same-origin page."""
    server, file, _ = own
    answer = httpx.post(
        f"http://localhost:{server.port}/api/select",
        content=json.dumps({"shot": "kite", "take": 2}),
        headers={
            "Content-Type": "application/json; charset=UTF-8",
            "X-Storyboard-Token": server.token,
            "Origin": f"http://localhost:{server.port}",
            "Sec-Fetch-Site": "same-origin",
        },
    )
    assert answer.status_code == 200, answer.text
    assert b"    select: 2 " in file.read_bytes()


def test_a_take_not_rendered_is_refused(own: tuple[ReviewServer, Path, list[ChangeEvent]]) -> None:
    server, file, _ = own
    file.write_bytes(
        file.read_bytes().replace(b"    takes: 2\n    select: 1", b"    takes: 3\n    select: 1")
    )
    before = state(server, file)
    answer = _post(server, {"shot": "kite", "take": 3})
    assert answer.status_code == 409, answer.text
    assert "not rendered" in answer.json()["error"]
    assert state(server, file) == before


def test_a_cut_that_cannot_be_stitched_puts_the_choice_back(
    own: tuple[ReviewServer, Path, list[ChangeEvent]],
) -> None:
    """Take 2's clip rots on disk (same size and time, other bytes): the plan still finds it,
    the re-stitch verifies it and fails; the file gets its old select back."""
    server, file, events = own
    clip = plan_build(file).shot("kite").takes[1].clip
    assert clip is not None
    st = clip.path.stat()
    data = bytearray(clip.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.path.chmod(0o644)
    clip.path.write_bytes(bytes(data))
    os.utime(clip.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    yaml = file.read_bytes()
    answer = _post(server, {"shot": "kite", "take": 2})
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert "select: 1 is back" in body["error"] and body["hint"]
    assert file.read_bytes() == yaml
    assert git(file.parent, "diff") == ""
    assert events == []
    assert selected_take(httpx.get(server.url).text, "kite") == 1


def test_writes_are_taken_one_at_a_time(own: tuple[ReviewServer, Path, list[ChangeEvent]]) -> None:
    server, file, events = own
    answers: list[httpx.Response] = []

    def pick(take: int) -> None:
        answers.append(_post(server, {"shot": "kite", "take": take}))

    threads = [threading.Thread(target=pick, args=(t,)) for t in (2, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [200, 200, 200]
    final = int(re.findall(rb"    select: (\d)", file.read_bytes())[-1])
    # Serialised: each change starts from the take the one before it left.
    chain = [1, *(e.new for e in events)]
    assert [e.old for e in events] == chain[:-1]
    assert chain[-1] == final
    assert len(git(file.parent, "diff", "--numstat").split()) == (0 if final == 1 else 3)
    assert selected_take(httpx.get(server.url).text, "kite") == final


# -- lifecycle ------------------------------------------------------------------------------------


def test_a_taken_port_is_a_usage_error(rendered: Path, tmp_path: Path) -> None:
    file = _copy(rendered, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortUnavailable) as caught:
            ReviewServer(file, port=port)
    assert caught.value.port == port and caught.value.exit_code == 2
    assert "--port 0" in (caught.value.hint() or "")


def test_serve_forever_stops_on_shutdown(shared: tuple[ReviewServer, Path], tmp_path: Path) -> None:
    _, file = shared
    server = ReviewServer(file, out_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "index.html").is_file()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    assert httpx.get(server.url).status_code == 200
    server.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()
    server.shutdown()  # twice is fine
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)
    idle = ReviewServer(file, out_dir=tmp_path / "elsewhere")
    idle.shutdown()  # never served: returns at once


def test_the_command_serves_until_interrupted(rendered: Path, tmp_path: Path) -> None:
    """``storyboard review --serve`` as a user runs it: the URL it prints works, a pick is
    reported on stdout, Ctrl-C stops it with exit 0."""
    import signal
    import sys

    file = _copy(rendered, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "STORYBOARD_CACHE"}
    command = [sys.executable, "-m", "storyboard", "review", "--serve", str(file)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A test runner may ignore SIGINT in its children; a terminal's Ctrl-C is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", first)
        assert found is not None, (first, proc.stderr.read() if proc.stderr else "")
        url, port, token = found.group(0), found.group(1), found.group(2)
        assert httpx.get(url).status_code == 200
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/select",
            json={"shot": "kite", "take": 2},
            headers={"X-Storyboard-Token": token},
        )
        assert answer.status_code == 200, answer.text
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "kite: take 1 -> 2" in out
    assert "Traceback" not in err
    assert token not in err
