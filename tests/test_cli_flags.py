"""Every flag on every command, or an error; counts that count (issue 9 items 2, 4).

Each test drives the real command line (``cli.main``) on a real storyboard folder.
"""

from __future__ import annotations

import json

import pytest
from conftest import Project, run_cli

# a and c are independent; b extends a (so --only b brings a into scope).
BOARD = """\
storyboard: 1
vars:
  hero: a red kite
  place: a field
defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}
shots:
  - id: a
    prompt: "{{ hero }} over {{ place }}"
  - id: b
    extends: a
    prompt: the kite climbs higher
  - id: c
    prompt: a blue door, pan left
  - id: card
    card: {text: "The end", duration: 1.0}
"""

# Two independent shots: the cheapest board that renders and stitches.
PAIR = """\
storyboard: 1
defaults: {model: skyreels-v4-fast, resolution: 480p, duration: 3}
output: {resolution: 480p}
shots:
  - id: a
    prompt: a red kite over a field
  - id: c
    prompt: a blue door, pan left
"""

PRICE = 0.204  # skyreels-v4-fast, 480p, 3 s


def _by_id(plan: dict[str, object]) -> dict[str, dict[str, object]]:
    shots = plan["shots"]
    assert isinstance(shots, list)
    return {s["id"]: s for s in shots}


# -- plan honours --only, --force, -q, --budget ---------------------------------------------


def test_plan_json_marks_scope_and_what_this_run_renders(project: Project) -> None:
    project.write(BOARD)
    plan = _by_id(project.plan("--only", "b"))
    # --only b renders b and the shot it extends; c is stale but outside the run.
    assert {k: v["in_scope"] for k, v in plan.items()} == {
        "a": True, "b": True, "c": False, "card": True,
    }  # fmt: skip
    assert {k: v["will_render"] for k, v in plan.items()} == {
        "a": True, "b": True, "c": False, "card": False,
    }  # fmt: skip
    assert [t["will_render"] for t in plan["c"]["take_plan"]] == [False]
    assert [t["will_render"] for t in plan["a"]["take_plan"]] == [True]
    whole = project.plan("--only", "b")
    assert whole["only"] == ["b"]
    assert whole["to_render"] == ["a", "b"]

    forced = project.plan("--only", "c", "--force", "a")
    shots = _by_id(forced)
    assert shots["a"]["reason"] == "forced" and shots["a"]["will_render"] is False
    assert shots["c"]["will_render"] is True
    assert forced["forced"] == ["a"]
    assert forced["to_render"] == ["c"]


def test_plan_table_marks_scope(project: Project) -> None:
    project.write(BOARD)
    result = run_cli("plan", "--only", "c", str(project.file))
    assert result.code == 0, result.err
    rows = {line.split()[0]: line for line in result.out.splitlines() if line.strip()}
    assert "outside --only" in rows["a"] and "outside --only" in rows["b"]
    assert "outside --only" not in rows["c"]
    assert "1 shot(s) to render" in result.out
    # The cut cannot be stitched by this run: the footer says which shots are missing.
    assert "a, b" in result.out.splitlines()[-1]


def test_plan_quiet_prints_only_errors(project: Project) -> None:
    project.write(BOARD)
    quiet = run_cli("plan", "-q", str(project.file))
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    bad = run_cli("plan", "-q", "--only", "nope", str(project.file))
    assert bad.code == 2 and bad.out == "" and "nope" in bad.err


def test_plan_budget_says_whether_the_run_fits(project: Project) -> None:
    project.write(PAIR)
    fits = run_cli("plan", "--live", "--budget", "5", str(project.file))
    assert fits.code == 0, fits.err
    assert "fits the budget of $5.00" in fits.out
    over = run_cli("plan", "--live", "--budget", "0.10", str(project.file))
    # What render --live would do with the same budget: refused, exit 3.
    assert over.code == 3, over.err
    assert f"over the budget of $0.10 by ${2 * PRICE - 0.10:.2f}" in over.out
    data = json.loads(
        run_cli("plan", "--live", "--json", "--budget", "0.10", str(project.file)).out
    )
    assert (data["budget"], data["fits"]) == (0.10, False)
    assert data["cost"] == pytest.approx(2 * PRICE)
    # --only brings the run under the budget.
    only = run_cli("plan", "--live", "--json", "--budget", "0.25", "--only", "a", str(project.file))
    assert only.code == 0 and json.loads(only.out)["fits"] is True
    # -q: nothing on stdout, the refusal on stderr, the exit code says.
    quiet = run_cli("plan", "--live", "-q", "--budget", "0.10", str(project.file))
    assert quiet.code == 3 and quiet.out == "" and "over the budget of $0.10" in quiet.err
    # The storyboard's own render.budget is what a live render applies: plan applies it too.
    project.write(PAIR.replace("shots:\n", "render: {budget: 0.30}\nshots:\n", 1))
    own = run_cli("plan", "--live", str(project.file))
    assert own.code == 3 and "over the budget of $0.30" in own.out
    # A preview costs nothing and fits any budget; without a budget there is no verdict.
    assert run_cli("plan", "--budget", "0", str(project.file)).code == 0
    plain = json.loads(run_cli("plan", "--json", str(project.file)).out)
    assert plain["fits"] is True and plain["budget"] is None


def test_plan_verbose_lists_every_take_and_output_names_the_cut(project: Project) -> None:
    project.write(BOARD.replace("    prompt: a blue door", "    takes: 2\n    prompt: a blue door"))
    result = run_cli("plan", "-v", str(project.file))
    assert result.code == 0, result.err
    assert "c take 1 (selected): seed random, key " in result.out
    assert "c take 2: seed random, key " in result.out
    assert "a take 1: seed random" in result.out
    cut = project.root / "elsewhere" / "cut.mp4"
    data = json.loads(run_cli("plan", "--json", "-o", str(cut), str(project.file)).out)
    assert data["cut"] == str(cut)
    bad = run_cli("plan", "-o", str(project.root / "cut.txt"), str(project.file))
    assert bad.code == 2 and "-o/--output" in bad.err


# -- a flag a command does not take is refused ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "takers"),
    [
        (["validate", "--live"], "plan, render, stitch"),
        (["validate", "-v"], "plan, render"),
        (["validate", "--only", "a"], "plan, render"),
        (["stitch", "--budget", "1"], "plan, render"),
        (["stitch", "--jobs", "2"], "render"),
        (["stitch", "-v"], "plan, render"),
        (["stitch", "--force", "a"], "plan, render"),
        (["plan", "--jobs", "2"], "render"),
        (["plan", "--keep-going"], "render"),
    ],
)
def test_a_flag_the_command_does_not_take_is_refused(
    project: Project, argv: list[str], takers: str
) -> None:
    project.write(BOARD)
    result = run_cli(*argv, str(project.file))
    flag = argv[1]
    assert result.code == 2
    assert f"error: storyboard {argv[0]} does not take {flag}" in result.err
    assert f"hint: {flag} is taken by {takers}" in result.err
    assert "Traceback" not in result.err and result.out == ""


def test_flags_outside_a_command_and_typos_are_refused_with_a_hint(project: Project) -> None:
    project.write(BOARD)
    schema = run_cli("schema", "--json")
    assert schema.code == 2 and "storyboard schema does not take --json" in schema.err
    early = run_cli("--live", "plan", str(project.file))
    assert early.code == 2 and "after the command" in early.err
    assert f"storyboard plan --live {project.file}" in early.err
    typo = run_cli("render", "--jbos", "2", str(project.file))
    assert typo.code == 2 and "did you mean '--jobs'?" in typo.err
    extra = run_cli("plan", str(project.file), str(project.file))
    assert extra.code == 2 and "one FILE" in extra.err


# -- --set needs a variable the storyboard reads ------------------------------------------------


def test_set_of_an_unknown_variable_is_an_error_with_a_did_you_mean(project: Project) -> None:
    project.write(BOARD)
    for command in ("validate", "plan"):
        result = run_cli(command, "--set", "heroo=a gull", str(project.file))
        assert result.code == 2, result.err
        assert "--set heroo" in result.err and "no variable 'heroo'" in result.err
        assert "did you mean 'hero'?" in result.err
    listed = json.loads(run_cli("validate", "--json", "--set", "palce=x", str(project.file)).out)
    assert [p["hint"] for p in listed] == ["did you mean 'place'?"]
    assert listed[0]["line"] == 2  # at `vars:`
    far = run_cli("validate", "--set", "zzz=1", str(project.file))
    assert far.code == 2 and "variables: hero, place" in far.err
    ok = run_cli("validate", "--set", "hero=a gull", str(project.file))
    assert ok.code == 0, ok.err


def test_set_of_a_variable_only_a_template_reads_is_allowed(project: Project) -> None:
    (project.root / "prompts").mkdir()
    (project.root / "prompts" / "style.j2").write_text("in the style of {{ painter }}")
    project.write(
        "storyboard: 1\nshots:\n  - id: a\n    model: skyreels-v4-fast\n"
        "    prompt: '{{ hero }}, {% include \"prompts/style.j2\" %}'\n"
    )
    ok = run_cli("validate", "--set", "hero=fox", "--set", "painter=Turner", str(project.file))
    assert ok.code == 0, ok.err
    typo = run_cli("validate", "--set", "hero=fox", "--set", "paintr=Turner", str(project.file))
    assert typo.code == 2 and "did you mean 'painter'?" in typo.err


# -- render and stitch --json; counts that count; a stale cut says what is missing ----------


@pytest.mark.slow
def test_render_and_stitch_json_reports_and_counts(project: Project) -> None:
    project.write(PAIR)
    first = run_cli("render", "--json", str(project.file))
    assert first.code == 0, first.err
    report = json.loads(first.out)  # one JSON document, nothing else on stdout
    assert sorted((r["shot"], r["take"]) for r in report["rendered"]) == [("a", 1), ("c", 1)]
    assert report["up_to_date"] == [] and report["failed"] == []
    assert report["spent"] == {"usd": 0.0, "takes": 0}
    cut = report["cut"]
    assert cut["path"].endswith("storyboard.preview.mp4") and cut["state"] == "written"
    assert cut["seconds"] == pytest.approx(6.0, abs=0.2)
    assert report["not_stitched"] is None

    again = run_cli("render", str(project.file))
    assert again.code == 0
    assert "rendered 0 clip(s), 2 up to date" in again.err
    rerun = json.loads(run_cli("render", "--json", str(project.file)).out)
    assert rerun["rendered"] == [] and len(rerun["up_to_date"]) == 2
    assert rerun["cut"]["state"] == "reused"

    stitched = run_cli("stitch", "--json", str(project.file))
    assert stitched.code == 0, stitched.err
    data = json.loads(stitched.out)
    assert data["cut"]["path"] == cut["path"] and data["rendered"] == []


@pytest.mark.slow
def test_only_leaves_the_cut_stale_and_names_the_missing_shots(project: Project) -> None:
    project.write(PAIR)
    result = run_cli("render", "-v", "--only", "c", str(project.file))
    assert result.code == 0, result.err
    assert "to render: c: 1 take (" in result.err and "to render: a" not in result.err
    assert "rendered 1 clip(s), 0 up to date" in result.err
    assert "cut not stitched" in result.err and "a is not rendered yet" in result.err
    assert "outside --only c" in result.err
    assert f"hint: storyboard render {project.file}" in result.err
    report = json.loads(run_cli("render", "--json", "--only", "c", str(project.file)).out)
    assert report["cut"] is None
    assert report["not_stitched"]["missing"] == ["a"]
    assert [r["shot"] for r in report["up_to_date"]] == ["c"]
    stitch = run_cli("stitch", "--json", str(project.file))
    assert stitch.code == 1
    assert json.loads(stitch.out)["not_stitched"]["missing"] == ["a"]


@pytest.mark.slow
def test_render_json_reports_failures_with_message_and_hint(project: Project) -> None:
    (project.root / "refs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    project.write(
        PAIR.replace(
            "    prompt: a red kite", "    first_frame: refs/broken.png\n    prompt: a red kite"
        )
    )
    result = run_cli("render", "--json", "--keep-going", str(project.file))
    assert result.code == 1
    report = json.loads(result.out)
    assert [f["shot"] for f in report["failed"]] == ["a"]
    assert "broken.png" in report["failed"][0]["message"]
    assert "hint" in report["failed"][0]
    assert [r["shot"] for r in report["rendered"]] == ["c"]
    assert report["cut"] is None and report["not_stitched"]["missing"] == ["a"]


@pytest.mark.slow
def test_live_render_json_reports_what_was_spent_at_list_price(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storyboard.testing.emulator import Emulator, EmulatorServer

    ws_key, qb_key = "ws-test-key-0123456789", "qb-test-key-0123456789"
    emu = Emulator(wavespeed_keys=(ws_key,), qingbo_keys=(qb_key,), scale=1 / 16, max_seconds=1.0)
    server = EmulatorServer(emu)
    try:
        for name, value in {
            "WAVESPEED_API_KEY": ws_key,
            "QINGBO_API_KEY": qb_key,
            "WAVESPEED_BASE_URL": server.url,
            "QINGBO_BASE_URL": server.url,
            "STORYBOARD_POLL_INTERVAL": "0.02",
            "STORYBOARD_MIN_OUTPUT_SHARE": "0",  # the emulator serves 1 s clips
        }.items():
            monkeypatch.setenv(name, value)
        project.write(PAIR)
        first = run_cli("render", "--live", "--json", "--only", "a", str(project.file))
        assert first.code == 0, first.err
        report = json.loads(first.out)
        assert report["backend"] == "live"
        # Each rendered take also says how many status requests its task needed (issue 13).
        assert [{k: r[k] for k in ("shot", "take")} for r in report["rendered"]] == [
            {"shot": "a", "take": 1}
        ]
        assert all(isinstance(r["polls"], int) and r["polls"] >= 1 for r in report["rendered"])
        assert report["spent"] == {"usd": pytest.approx(PRICE), "takes": 1}
        assert report["outside_only"] == ["c"] and report["not_stitched"]["missing"] == ["c"]
        assert "--live" in report["not_stitched"]["hint"]
        assert len(emu.tasks()) == 1
        again = json.loads(run_cli("render", "--live", "--json", str(project.file)).out)
        assert again["spent"] == {"usd": pytest.approx(PRICE), "takes": 1}  # only c
        assert again["up_to_date"] == [{"shot": "a", "take": 1}]
        assert again["cut"]["path"].endswith("storyboard.mp4")
    finally:
        server.close()
    assert emu.internal_errors == []
