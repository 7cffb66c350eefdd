"""API keys are checked at start-up and never echoed, in any form (issue 8 item 6).

A key's shape is checked where a client is built from the environment and in the live
run's preflight (every problem listed before the first request); the error names the
variable and what is wrong, never the value. Every form of a key (raw, ``repr``- and
JSON-escaped, URL-encoded, base64 of the key and of ``Bearer <key>``) is redacted from every
message. The end-to-end tests drive ``cli.main`` against the emulator on 127.0.0.1.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from conftest import PAIR_BOARD, Result, write_image
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from storyboard.cli import main
from storyboard.errors import InvalidAPIKey, MissingAPIKey, redact_secrets, secret_forms
from storyboard.providers._http import KEY_LENGTH, ProviderContext, check_key, key_problem
from storyboard.providers.qingbo import QingboProvider
from storyboard.providers.wavespeed import WaveSpeedProvider
from storyboard.testing.emulator import Emulator, EmulatorServer, Fault

VARS = ("WAVESPEED_API_KEY", "QINGBO_API_KEY")
PROBLEMS = re.compile(
    r"(contains a control character|contains a non-ASCII character|contains whitespace|"
    r"is too short to be an API key \(\d+ characters; at least \d+\)|"
    r"is too long to be an API key \(\d+ characters; at most \d+\))"
)

# Printable ASCII without the space: what a usable key is made of.
KEY_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
# A distinctive prefix, so a key's forms cannot turn up by chance in media or SQLite bytes.
KEYS = st.text(KEY_CHARS, min_size=10, max_size=40).map(lambda tail: "sk-Zq7" + tail)


def wire_forms(key: str) -> list[str]:
    """The forms a key takes in the texts an HTTP library, a provider or a log shows."""
    forms = [
        key,
        repr(key)[1:-1],
        repr(key.encode("utf-8", "surrogatepass"))[2:-1],
        json.dumps(key)[1:-1],
        quote(key, safe=""),
        quote_plus(key),
        "".join(f"%{b:02x}" for b in key.encode("utf-8", "surrogatepass")),
        base64.b64encode(key.encode("utf-8", "surrogatepass")).decode(),
        base64.b64encode(f"Bearer {key}".encode("utf-8", "surrogatepass")).decode(),
    ]
    return [f for f in dict.fromkeys(forms) if len(f) >= 4]


def hostile_keys() -> st.SearchStrategy[str]:
    """Keys a shell or a paste can produce that no provider issues (never a NUL: the
    environment cannot hold one)."""
    bad = st.sampled_from(
        ["\n", "\r", "\t", "\x07", "\x1b", "\x7f", " ", "é", "ключ", "🔑", "\u2028"]
    )
    return st.builds(
        lambda head, b, tail: head + b + tail,
        st.text(KEY_CHARS, min_size=4, max_size=20),
        bad,
        st.text(KEY_CHARS, min_size=4, max_size=20),
    )


def assert_no_form(text: str, key: str) -> None:
    for form in wire_forms(key):
        assert form not in text, (form, text)


# --------------------------------------------------------------------------------------------
# The redaction function
# --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(KEYS, hostile_keys(), st.text(min_size=8, max_size=30)),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    data=st.data(),
)
def test_every_form_of_a_key_is_redacted(
    key: str, before: str, after: str, data: st.DataObject
) -> None:
    assume(key.strip() and "*" not in key)
    form = data.draw(st.sampled_from(wire_forms(key)))
    text = f"{before}{form}{after}"
    redacted = redact_secrets(text, [key])
    assert form not in redacted
    assert "***" in redacted
    # The context the providers use redacts the same way, also across a message excerpt.
    ctx = ProviderContext("qingbo", "Qingbo", "QINGBO_API_KEY", "QINGBO_BASE_URL", secrets=(key,))
    assert form not in ctx.redact(text) and form not in ctx.clean(text)


def test_redaction_forms_include_the_escaped_encoded_and_base64_ones() -> None:
    key = "abc\ndef'gh%"
    forms = set(secret_forms(key))
    assert {"abc\\ndef'gh%", "abc%0Adef%27gh%25", "abc%0adef%27gh%25"} <= forms
    assert base64.b64encode(b"Bearer " + key.encode()).decode() in forms
    assert redact_secrets("header b'Bearer abc\\ndef\\'gh%'", [key]) == "header b'Bearer ***'"
    assert redact_secrets("nothing here", [key, ""]) == "nothing here"


# --------------------------------------------------------------------------------------------
# The key check
# --------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(key=KEYS, pad=st.sampled_from(["", " ", "\n", "\t ", " \r\n"]))
def test_a_printable_key_is_accepted_and_stripped(key: str, pad: str) -> None:
    assert key_problem(key) is None
    assert check_key("qingbo", "QINGBO_API_KEY", pad + key + pad) == key


@settings(max_examples=200, deadline=None)
@given(key=hostile_keys(), var=st.sampled_from(VARS))
def test_a_hostile_key_is_refused_naming_the_variable_never_the_value(key: str, var: str) -> None:
    environ = {var: key}
    cls = WaveSpeedProvider if var == "WAVESPEED_API_KEY" else QingboProvider
    with pytest.raises(InvalidAPIKey) as info:
        cls.from_env(environ=environ)
    error = info.value
    assert error.env_var == var and error.exit_code == 2
    text = f"{error}\n{error.hint()}\n{error.args!r}"
    assert str(error) == f"{var} {error.problem}" and PROBLEMS.fullmatch(error.problem)
    assert_no_form(text, key)
    # Building the client directly checks the key the same way.
    with pytest.raises(InvalidAPIKey):
        cls(api_key=key)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abcdefgh\n12345", "contains a control character"),
        ("abcd\x07efghij", "contains a control character"),
        ("abcd\x00efghij", "contains a control character"),
        ("clé-secrète-123", "contains a non-ASCII character"),
        ("abcd efghij", "contains whitespace"),
        ("short", "is too short to be an API key (5 characters; at least 8)"),
        ("k" * 513, "is too long to be an API key (513 characters; at most 512)"),
    ],
)
def test_each_problem_is_named(value: str, problem: str) -> None:
    assert KEY_LENGTH == (8, 512)
    with pytest.raises(InvalidAPIKey) as info:
        check_key("qingbo", "QINGBO_API_KEY", value)
    assert str(info.value) == f"QINGBO_API_KEY {problem}"
    with pytest.raises(MissingAPIKey):
        check_key("qingbo", "QINGBO_API_KEY", " \n ")


# --------------------------------------------------------------------------------------------
# End to end: the CLI against the emulator on 127.0.0.1
# --------------------------------------------------------------------------------------------

BOARD = PAIR_BOARD


def cli(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set variables for one Hypothesis example (fixtures are per test, not per example)."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def project() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="storyboard-secrets-") as tmp:
        root = Path(tmp)
        write_image(root / "refs" / "a.png", (200, 60, 40))
        (root / "storyboard.yaml").write_text(BOARD, encoding="utf-8")
        old = Path.cwd()
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(old)


@contextmanager
def emulator(ws_key: str, qb_key: str) -> Iterator[EmulatorServer]:
    emu = Emulator(
        wavespeed_keys=(ws_key,),
        qingbo_keys=(qb_key,),
        scale=1 / 16,
        max_seconds=1.0,
        polls_to_start=1,
        polls_to_finish=2,
    )
    with EmulatorServer(emu) as server:
        with environment(
            WAVESPEED_BASE_URL=server.url,
            QINGBO_BASE_URL=server.url,
            STORYBOARD_POLL_INTERVAL="0.02",
            STORYBOARD_MIN_OUTPUT_SHARE="0",  # served clips are cut to 1 s
        ):
            yield server
        assert emu.internal_errors == []


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(key=hostile_keys(), var=st.sampled_from(VARS))
def test_render_refuses_a_hostile_key_before_any_request(key: str, var: str) -> None:
    good = {"WAVESPEED_API_KEY": "ws-secrets-key-Hh28Kk", "QINGBO_API_KEY": "qb-secrets-key-Nn47Pp"}
    with project(), emulator(*good.values()) as server, environment(**{**good, var: key}):
        result = cli("render", "--live", "storyboard.yaml")
        assert result.code == 2, result.err
        assert "Traceback" not in result.err
        # Listed by preflight with every other obstacle, naming the variable and the problem.
        assert re.search(rf"{var} {PROBLEMS.pattern}", result.err), result.err
        assert f"export {var}=..." in result.err
        assert_no_form(result.out + result.err, key)
        assert server.emulator.requests == []


@pytest.mark.slow
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ws_key=KEYS, qb_key=KEYS, data=st.data())
def test_no_form_of_a_key_reaches_a_message_or_a_file(
    ws_key: str, qb_key: str, data: st.DataObject
) -> None:
    assume(ws_key != qb_key and ws_key not in qb_key and qb_key not in ws_key)
    # Each provider echoes some form of its own key back in an error reply.
    ws_echo = " ".join(data.draw(st.lists(st.sampled_from(wire_forms(ws_key)), min_size=1)))
    qb_echo = " ".join(data.draw(st.lists(st.sampled_from(wire_forms(qb_key)), min_size=1)))
    with project() as root, emulator(ws_key, qb_key) as server:
        emu = server.emulator
        emu.script(
            Fault(on="poll", provider="qingbo", status=400, message=f"bad header {qb_echo}"),
            Fault(on="upload", provider="wavespeed", status=400, message=f"signed {ws_echo}"),
        )
        with environment(WAVESPEED_API_KEY=f" {ws_key}\n", QINGBO_API_KEY=qb_key):
            runs = [cli("render", "--live", "-v", "--keep-going", "storyboard.yaml")]
            assert runs[0].code == 1, runs[0].err
            assert "Bearer ***" in runs[0].err or "***" in runs[0].err
            runs.append(cli("render", "--live", "-v", "storyboard.yaml"))
            assert runs[1].code == 0, runs[1].err
            runs.append(cli("plan", "--live", "--json", "storyboard.yaml"))
        files = [p for p in root.rglob("*") if p.is_file()]
        assert any(p.name.startswith("journal.sqlite") for p in files)
        assert root / "storyboard.lock" in files
        for key in (ws_key, qb_key):
            for run in runs:
                assert_no_form(run.out + run.err, key)
            for path in files:
                data_bytes = path.read_bytes()
                for form in wire_forms(key):
                    assert form.encode() not in data_bytes, (path, form)
        assert emu.auth_leaks == []
        for record in emu.requests:
            assert record.has_authorization == (record.kind not in ("upload", "download"))
