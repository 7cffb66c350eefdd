"""Stage 2b, validate: from a loaded document to a typed, templated, checked Storyboard.

``load_storyboard`` chains the first three stages: load (YAML with positions), schema
(JSON Schema of format v1), templating (Jinja2 sandbox) and then checks each shot against
its model's real limits and the storyboard's own rules (unique ids, upstream shots, files).
Every problem found is reported together, each at its ``FILE:LINE:COL``.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from storyboard import catalog
from storyboard.catalog import MANAGED, MODELS, ModelSpec
from storyboard.errors import InvalidStoryboard, Problem
from storyboard.loader import Document, JsonPath, load
from storyboard.mediainfo import MediaMemo, UnreadableMedia, WrongContent
from storyboard.model import (
    Card,
    Keyframe,
    Media,
    MediaKind,
    OutputSettings,
    Ref,
    RenderSettings,
    Shot,
    Soundtrack,
    Storyboard,
    Transition,
    Trim,
)
from storyboard.paths import VIDEO_CONTAINERS, UnsafePath, preview_path, safe_output_path
from storyboard.schema import validate_schema
from storyboard.templating import TemplateProblem, Templater, unread_overrides

__all__ = ["load_storyboard"]

# Fields that name other shots or identify this one: never templates.
_NOT_TEMPLATED = frozenset({"id", "extends", "continues"})
# The only fields a title card may carry.
_CARD_FIELDS = frozenset({"id", "card", "transition", "skip"})
DEFAULT_TRANSITION_SECONDS = 0.5
DEFAULT_CARD_SECONDS = 2.0


def load_storyboard(file: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Storyboard:
    """Load, template and check a storyboard file.

    Args:
        file: path of the storyboard YAML.
        overrides: ``--set`` values; they replace ``vars`` of the same name.

    Returns:
        The storyboard with every template rendered and every default applied.

    Raises:
        InvalidStoryboard: with every problem found, each located in the file.
    """
    doc = load(file)
    return _Checker(doc, dict(overrides or {})).run()


class _Checker:
    def __init__(self, doc: Document, overrides: dict[str, Any]) -> None:
        self.doc = doc
        self.overrides = overrides
        self.problems: list[Problem] = []
        self.root = doc.path.parent
        self._real_root = Path(os.path.realpath(self.root))
        self._media_memo: MediaMemo | None = None

    # -- reporting -------------------------------------------------------------------------

    def add(
        self,
        path: JsonPath,
        message: str,
        *,
        hint: str | None = None,
        key: bool = False,
        shot: str | None = None,
        line_offset: int = 0,
    ) -> None:
        self.problems.append(
            self.doc.problem(path, message, hint=hint, key=key, shot=shot, line_offset=line_offset)
        )

    # -- the stage -------------------------------------------------------------------------

    def run(self) -> Storyboard:
        try:
            return self._run()
        finally:
            if self._media_memo is not None:
                self._media_memo.save()

    def _run(self) -> Storyboard:
        data = self.doc.data
        if not isinstance(data, dict):
            self.add((), "a storyboard is a mapping with `storyboard: 1` and `shots:`")
            raise InvalidStoryboard(self.problems)
        raw_vars = data.get("vars")
        variables: dict[str, Any] = dict(raw_vars) if isinstance(raw_vars, dict) else {}
        variables.update(self.overrides)
        title = data.get("title") if isinstance(data.get("title"), str) else None
        self.templater = Templater(self.root, variables, title)
        # A --set nothing reads would be silently ignored (a typo): an error at `vars:`.
        defined = raw_vars if isinstance(raw_vars, dict) else {}
        unread, known = unread_overrides(self.templater, self.overrides, defined, data)
        for name in unread:
            self.add(
                ("vars",) if isinstance(raw_vars, dict) else (),
                f"--set {name}: the storyboard has no variable {name!r} (not in vars:, and no "
                "template reads it)",
                hint=_close(name, known)
                or (f"variables: {', '.join(sorted(known))}" if known else "add it under vars:"),
                key=True,
            )

        # Shot fields are rendered before the schema check so that the schema (enums,
        # patterns) sees what the provider will see.
        rendered = dict(data)
        raw_shots = data.get("shots")
        if isinstance(raw_shots, list):
            rendered["shots"] = [
                self._render_own(shot, ("shots", i)) if isinstance(shot, dict) else shot
                for i, shot in enumerate(raw_shots)
            ]
        if isinstance(data.get("defaults"), dict):
            shown: dict[str, Any] = {}
            for key, value in data["defaults"].items():
                try:
                    shown[key] = (
                        self.templater.render(value, {}) if isinstance(value, str) else value
                    )
                except TemplateProblem:
                    shown[key] = value
            rendered["defaults"] = shown
        schema_problems = validate_schema(self.doc, rendered)
        self.problems.extend(schema_problems)
        broken = {_section(p.path) for p in schema_problems}
        if "" in broken or "storyboard" in broken or not isinstance(raw_shots, list):
            # Not a storyboard at all: shot checks would only add noise.
            raise InvalidStoryboard(self.problems)
        bad_shots = {_shot_index(p.path) for p in schema_problems if _section(p.path) == "shots"}
        if "defaults" in broken:
            # Check the shots without the defaults fields that are themselves wrong.
            bad_keys = {
                p.path.split(".")[2].split("[")[0]
                for p in schema_problems
                if p.path.startswith("$.defaults.")
            }
            defaults = data.get("defaults")
            defaults = defaults if isinstance(defaults, dict) else {}
            data = {**data, "defaults": {k: v for k, v in defaults.items() if k not in bad_keys}}
        shots = self._shots(rendered, data, bad_shots)
        output = self._output(data) if "output" not in broken else OutputSettings(path=self.root)
        render = self._render_settings(data) if "render" not in broken else RenderSettings()
        self._check_transitions(shots, raw_shots, data, output)
        self._check_beside()
        if self.problems:
            raise InvalidStoryboard(self.problems)
        return Storyboard(
            path=self.doc.path,
            version=int(data["storyboard"]),
            title=title,
            vars=variables,
            shots=tuple(shots),
            output=output,
            render=render,
        )

    # -- templating ------------------------------------------------------------------------

    def _render_value(
        self, value: Any, path: JsonPath, scope: Mapping[str, Any], shot_id: str | None
    ) -> Any:
        if isinstance(value, str):
            try:
                return self.templater.render(value, scope)
            except TemplateProblem as exc:
                offset = 0
                mark = self.doc.mark(path)
                if exc.lineno is not None and mark.style in ("|", ">"):
                    offset = exc.lineno  # block scalars start on the line after the key
                elif exc.lineno is not None and exc.lineno > 1:
                    offset = exc.lineno - 1
                self.add(path, exc.message, hint=exc.hint, shot=shot_id, line_offset=offset)
                return value
        if isinstance(value, dict):
            return {k: self._render_value(v, (*path, k), scope, shot_id) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render_value(v, (*path, i), scope, shot_id) for i, v in enumerate(value)]
        return value

    def _render_own(self, shot: dict[str, Any], path: JsonPath) -> dict[str, Any]:
        shot_id = shot.get("id") if isinstance(shot.get("id"), str) else None
        out: dict[str, Any] = {}
        for key, value in shot.items():
            if key in _NOT_TEMPLATED:
                out[key] = value
            else:
                out[key] = self._render_value(value, (*path, key), shot, shot_id)
        return out

    # -- shots -----------------------------------------------------------------------------

    def _shots(self, rendered: dict[str, Any], raw: dict[str, Any], bad: set[int]) -> list[Shot]:
        shots_data: list[Any] = rendered.get("shots") or []
        raw_defaults = raw.get("defaults") or {}
        first_seen: dict[str, int] = {}
        kinds: dict[str, tuple[int, Shot | None]] = {}
        result: list[Shot] = []
        for i, shot in enumerate(shots_data):
            if not isinstance(shot, dict):
                continue
            shot_id = shot.get("id")
            if isinstance(shot_id, str):
                if shot_id in first_seen:
                    line = self.doc.mark(("shots", first_seen[shot_id])).line
                    self.add(
                        ("shots", i, "id"),
                        f"duplicate shot id {shot_id!r} (first used on line {line})",
                        hint="every shot needs its own id",
                        shot=shot_id,
                    )
                    continue
                first_seen[shot_id] = i
            if i in bad or not isinstance(shot_id, str):
                if isinstance(shot_id, str):
                    kinds[shot_id] = (i, None)
                continue
            built = self._shot(i, shot, raw["shots"][i], raw_defaults, kinds)
            # An invalid shot is still known by its id (None): a shot built on it is told
            # that its upstream is invalid, not that there is no such shot.
            kinds[shot_id] = (i, built)
            if built is not None:
                result.append(built)
        return result

    def _shot(
        self,
        index: int,
        own: dict[str, Any],
        raw_own: dict[str, Any],
        raw_defaults: dict[str, Any],
        earlier: dict[str, tuple[int, Shot | None]],
    ) -> Shot | None:
        base: JsonPath = ("shots", index)
        shot_id: str = own["id"]
        count_before = len(self.problems)
        line = self.doc.mark(base).line

        if "card" in own:
            for key in sorted(set(own) - _CARD_FIELDS):
                self.add(
                    (*base, key),
                    f"a title card takes no {key!r}",
                    hint="a card is drawn locally: only id, card, transition and skip apply",
                    key=True,
                    shot=shot_id,
                )
            card = self._card(own["card"], (*base, "card"), shot_id)
            transition = self._transition(own.get("transition"), (*base, "transition"))
            if len(self.problems) > count_before:
                return None
            return Shot(
                id=shot_id,
                index=index,
                line=line,
                card=card,
                transition=transition,
                skip=bool(own.get("skip", False)),
            )

        # Which model renders the shot: its own, else the defaults'.
        sources: dict[str, JsonPath] = {k: (*base, k) for k in own}
        fields: dict[str, Any] = dict(own)
        if "model" not in fields and "model" in raw_defaults:
            fields["model"] = self._render_value(
                raw_defaults["model"], ("defaults", "model"), raw_own, shot_id
            )
            sources["model"] = ("defaults", "model")
        model_id = fields.get("model")
        if model_id is None:
            self.add(
                base,
                f"shot {shot_id!r} has no model",
                hint="set model: on the shot or under defaults:, or make it a title card",
                shot=shot_id,
            )
            return None
        spec = MODELS.get(model_id)
        if spec is None:
            # The schema rejects unknown ids; a defaults model that renders to one lands here.
            hint = _close(model_id, MODELS) or "models: " + ", ".join(MODELS)
            self.add(sources["model"], f"unknown model {model_id!r}", hint=hint, shot=shot_id)
            return None

        for key in sorted(own):
            if key not in spec.accepts:
                self.add(
                    (*base, key),
                    f"{spec.id} does not accept {key!r}",
                    hint=_who_accepts(key),
                    key=True,
                    shot=shot_id,
                )
                # Keep checking the rest of the shot without it: report everything at once.
                del fields[key]
        # A defaults value the model does not take is ignored for this shot (by design:
        # defaults are shared by shots of different models).
        for key, value in raw_defaults.items():
            if key in fields or key not in spec.accepts:
                continue
            fields[key] = self._render_value(value, ("defaults", key), raw_own, shot_id)
            sources[key] = ("defaults", key)
        built = self._model_shot(index, line, shot_id, spec, fields, sources, earlier)
        return built if len(self.problems) == count_before else None

    def _model_shot(
        self,
        index: int,
        line: int,
        shot_id: str,
        spec: ModelSpec,
        f: dict[str, Any],
        src: dict[str, JsonPath],
        earlier: dict[str, tuple[int, Shot | None]],
    ) -> Shot | None:
        before = len(self.problems)

        def bad(field: str, message: str, hint: str | None = None) -> None:
            self.add(src.get(field, ("shots", index)), message, hint=hint, shot=shot_id)

        # Required fields (V1 takes its first frame from `continues` too).
        for need in sorted(spec.requires):
            if need in f:
                continue
            if need == "first_frame" and "continues" in f:
                continue
            bad(need, f"{spec.id} needs {need!r}", _REQUIRE_HINTS.get(need))

        prompt = f.get("prompt", "")
        if len(prompt) > spec.prompt_max:
            bad(
                "prompt",
                f"prompt is {len(prompt)} characters after templating; {spec.id} takes at most {spec.prompt_max}",
            )

        duration = f.get("duration")
        if duration is not None and spec.durations is not None:
            low, high = spec.durations
            if duration != int(duration):
                bad("duration", f"{spec.id} takes whole seconds, not {duration}")
            elif not low <= duration <= high:
                bad("duration", f"{spec.id} takes a duration of {low}-{high} s, not {duration}")
        seconds = spec.clip_seconds(duration)

        if "aspect_ratio" in f and f["aspect_ratio"] not in spec.aspect_ratios:
            bad(
                "aspect_ratio",
                f"{spec.id} takes aspect_ratio {', '.join(spec.aspect_ratios)}, not {f['aspect_ratio']!r}",
            )
        if "resolution" in f and f["resolution"] not in spec.resolutions:
            bad(
                "resolution",
                f"{spec.id} takes resolution {', '.join(spec.resolutions)}, not {f['resolution']!r}",
            )
        if "seed" in f and spec.seed_range is not None:
            low, high = spec.seed_range
            if not low <= f["seed"] <= high:
                bad("seed", f"{spec.id} takes a seed in {low}..{high}, not {f['seed']}")
        if "cut_type" in f and f["cut_type"] not in spec.cut_types:
            bad(
                "cut_type",
                f"{spec.id} takes cut_type {', '.join(spec.cut_types)}, not {f['cut_type']!r}",
                _close(f["cut_type"], spec.cut_types),
            )

        # Upstream shots: earlier ones only, which also rules out cycles.
        for rel in ("extends", "continues"):
            if rel in f:
                self._check_upstream(rel, f[rel], src[rel], shot_id, index, earlier, spec)
        if "extends" in f and "continues" in f:
            bad("continues", "a shot either extends or continues another shot, not both")
        if "continues" in f and "first_frame" in f:
            bad(
                "first_frame",
                "first_frame and continues both set the first frame",
                "drop first_frame: `continues` takes the upstream shot's last frame",
            )
        if "extends" in f and "reference_video" in f:
            bad(
                "reference_video",
                f"{spec.id} takes one video: extends and reference_video cannot be combined",
            )

        self._check_params(f, src, spec, shot_id)

        first_frame = self._media(f, src, "first_frame", "image", shot_id)
        last_frame = self._media(f, src, "last_frame", "image", shot_id)
        reference_video = self._media(
            f, src, "reference_video", "video", shot_id, spec.seconds_range("video")
        )
        keyframes = self._keyframes(f, src, spec, seconds, shot_id)
        refs = self._refs(f, src, spec, shot_id)
        audio: tuple[Media, ...] = ()
        if "audio" in f:
            items = f["audio"] if isinstance(f["audio"], list) else [f["audio"]]
            path = src["audio"]
            audio = tuple(
                m
                for i, item in enumerate(items)
                if (
                    m := self._file(
                        item,
                        path if not isinstance(f["audio"], list) else (*path, i),
                        "audio",
                        shot_id,
                        spec.seconds_range("audio"),
                    )
                )
                is not None
            )

        self._check_one_audio(f, src, shot_id)
        if "action" in spec.accepts:  # a model with modes (V4): each mode's inputs
            self._check_v4_mode(f, bad)

        takes = int(f.get("takes", 1))
        select = int(f.get("select", 1))
        if select > takes:
            bad(
                "select",
                f"select is {select} but the shot has {takes} take(s)",
                f"use a number from 1 to {takes}, or raise takes",
            )
        trim = self._trim(f, src, seconds, shot_id)
        transition = self._transition(f.get("transition"), src.get("transition", ()))
        if len(self.problems) > before:
            return None
        return Shot(
            id=shot_id,
            index=index,
            line=line,
            model=spec.id,
            prompt=prompt,
            negative_prompt=f.get("negative_prompt"),
            seed=f.get("seed"),
            duration=float(duration) if duration is not None else None,
            aspect_ratio=f.get("aspect_ratio"),
            resolution=f.get("resolution"),
            first_frame=first_frame,
            last_frame=last_frame,
            keyframes=keyframes,
            refs=refs,
            audio=audio,
            reference_video=reference_video,
            extends=f.get("extends"),
            continues=f.get("continues"),
            action=f.get("action"),
            prompt_optimizer=f.get("prompt_optimizer"),
            cut_type=f.get("cut_type"),
            params=dict(f.get("params") or {}),
            takes=takes,
            select=select,
            trim=trim,
            transition=transition,
            skip=bool(f.get("skip", False)),
        )

    def _check_upstream(
        self,
        rel: str,
        target: str,
        path: JsonPath,
        shot_id: str,
        index: int,
        earlier: dict[str, tuple[int, Shot | None]],
        spec: ModelSpec,
    ) -> None:
        # Whether the model may extend/continue at all is its `accepts` set, checked earlier.
        if target == shot_id:
            self.add(path, f"shot {shot_id!r} {rel} itself", shot=shot_id)
            return
        if target not in earlier:
            later = [
                i
                for i, s in enumerate(self.doc.data.get("shots") or [])
                if isinstance(s, dict) and s.get("id") == target and i > index
            ]
            if later:
                self.add(
                    path,
                    f"{rel} names {target!r}, which comes later",
                    hint="a shot can only build on an earlier shot: move it after its upstream",
                    shot=shot_id,
                )
            else:
                self.add(
                    path,
                    f"{rel} names {target!r}, but there is no such shot",
                    hint=_close(target, earlier) or "use the id of an earlier shot",
                    shot=shot_id,
                )
            return
        upstream = earlier[target][1]
        if upstream is None:
            self.add(
                path,
                f"upstream {target!r} is invalid (see its error above)",
                hint=f"fix {target!r} first: this shot {rel} it",
                shot=shot_id,
            )
            return
        if upstream.card is not None:
            self.add(
                path,
                f"{rel} names {target!r}, a title card",
                hint="cards have no video",
                shot=shot_id,
            )
        elif upstream.skip:
            self.add(
                path,
                f"{rel} names {target!r}, which is skipped",
                hint="skip this shot too, or un-skip the upstream shot",
                shot=shot_id,
            )
        elif rel == "extends" and (limit := spec.seconds_range("video")) is not None:
            # The upstream clip is sent as the video to extend: the same length limit as a
            # reference video, known here from the models' output lengths.
            seconds = _clip_seconds(upstream, earlier)
            low, high = limit
            if not low <= seconds <= high:
                self.add(
                    path,
                    f"{spec.id}'s extension source must be {low:g}-{high:g} s long; the clip "
                    f"of {target!r} is about {seconds:.1f} s",
                    hint=f"shorten {target!r} (or the shots it extends), or extend a shorter "
                    "shot: the provider refuses a longer source video",
                    shot=shot_id,
                )

    def _check_params(
        self, f: dict[str, Any], src: dict[str, JsonPath], spec: ModelSpec, shot_id: str
    ) -> None:
        """``params`` may not carry a key the model's request, price or checks are built from."""
        params = f.get("params")
        if not isinstance(params, dict):
            return
        for key, value in params.items():
            field = spec.reserved_params.get(key)
            if field is None:
                continue
            if field == MANAGED:
                why = "storyboard relies on it being off (it submits, polls and downloads the task itself)"
                hint = f"remove {key!r} from params"
            else:
                why = "storyboard sends it from the shot's fields, and prices and checks those"
                hint = _field_hint(spec, field, value)
            self.add(
                (*src["params"], key),
                f"params may not set {key!r}: {why}",
                hint=hint,
                key=True,
                shot=shot_id,
            )

    def _check_one_audio(self, f: dict[str, Any], src: dict[str, JsonPath], shot_id: str) -> None:
        """``audio`` (audio_urls) or audio on refs (ref_images[].audio_url), not both."""
        if "audio" not in f:
            return
        bound = [
            (*src["refs"], i, "audio")
            for i, ref in enumerate(f.get("refs") or [])
            if isinstance(ref, dict) and "audio" in ref
        ]
        if not bound:
            return
        places = [src["audio"], bound[0]]
        later = max(places, key=lambda p: (self.doc.mark(p).line, self.doc.mark(p).col))
        self.add(
            later,
            "a shot takes driving audio in `audio` or on its refs, not both "
            "(the provider takes audio_urls or ref_images[].audio_url)",
            hint="keep one: drop `audio:` from the shot or from its refs",
            shot=shot_id,
        )

    def _check_v4_mode(self, f: dict[str, Any], bad: Any) -> None:
        has_media = any(
            k in f
            for k in ("first_frame", "refs", "reference_video", "audio", "extends", "continues")
        )
        if not has_media and not f.get("prompt"):
            bad("prompt", "a text-to-video shot needs a prompt")
        if "last_frame" in f and "first_frame" not in f and "continues" not in f:
            bad("last_frame", "last_frame needs a first_frame (or continues)")
        action = f.get("action")
        needs = {
            "image2video": ("first_frame", "continues"),
            "first_last_frame": ("last_frame",),
            "reference": ("refs",),
            "reference_video": ("reference_video",),
            "reference_audio": ("audio", "refs"),
            "extend": ("extends",),
        }
        if action in needs and not any(k in f for k in needs[action]):
            wanted = " or ".join(needs[action])
            bad("action", f"action {action!r} needs {wanted}")
        ref_audio = any(isinstance(r, dict) and "audio" in r for r in f.get("refs", []))
        if action == "reference_audio" and "audio" not in f and not ref_audio:
            bad("action", "action 'reference_audio' needs audio, or a ref with audio")

    # -- fields ----------------------------------------------------------------------------

    def _media(
        self,
        f: dict[str, Any],
        src: dict[str, JsonPath],
        field: str,
        kind: MediaKind,
        shot_id: str,
        seconds: tuple[float, float] | None = None,
    ) -> Media | None:
        if field not in f:
            return None
        return self._file(f[field], src[field], kind, shot_id, seconds)

    def _file(
        self,
        source: str,
        path: JsonPath,
        kind: MediaKind,
        shot_id: str | None,
        seconds: tuple[float, float] | None = None,
    ) -> Media | None:
        """The checked media of ``source``; ``seconds``: how long a local file must last."""
        if source.startswith(("http://", "https://")):
            return Media(source=source, kind=kind)
        if "://" in source:
            self.add(
                path, f"{source!r}: only http(s) URLs and local paths are supported", shot=shot_id
            )
            return None
        limit = catalog.MEDIA_LIMITS[kind]
        if "\0" in source:
            self.add(path, f"{source!r} contains a NUL character", shot=shot_id)
            return None
        target = self.root / source
        lexical = Path(os.path.normpath(target))
        if not lexical.is_relative_to(self.root):
            self.add(
                path,
                f"{source!r} is outside the storyboard's folder",
                hint="keep inputs in the storyboard's folder tree (or use an https URL)",
                shot=shot_id,
            )
            return None
        real = Path(os.path.realpath(target))
        if not real.is_relative_to(self._real_root):
            self.add(
                path,
                f"{source!r} is a link to a file outside the storyboard's folder",
                hint="copy the file into the storyboard's folder tree",
                shot=shot_id,
            )
            return None
        try:
            st = real.stat()
        except OSError:
            self.add(path, f"no such file: {source!r}", hint=_near_file(lexical), shot=shot_id)
            return None
        if not real.is_file():
            self.add(path, f"{source!r} is not a file", shot=shot_id)
            return None
        if real.suffix.lower() not in limit.extensions:
            kinds = "/".join(e.lstrip(".").upper() for e in limit.extensions)
            self.add(path, f"{source!r} is not an accepted {kind} file ({kinds})", shot=shot_id)
            return None
        if st.st_size > limit.max_bytes:
            self.add(
                path,
                f"{source!r} is {st.st_size / catalog.MB:.1f} MB; {kind} files may be at most "
                f"{limit.max_bytes // catalog.MB} MB",
                shot=shot_id,
            )
            return None
        try:
            self._memo().content(real, kind, hash=seconds is not None, st=st)
        except WrongContent as exc:
            self.add(path, exc.describe(repr(source)), hint=exc.hint(), shot=shot_id)
            return None
        if seconds is not None and not self._lasts(real, source, path, kind, seconds, shot_id):
            return None
        return Media(source=source, kind=kind, path=real)

    def _memo(self) -> MediaMemo:
        if self._media_memo is None:
            self._media_memo = _media_memo(self.doc.path)
        return self._media_memo

    def _lasts(
        self,
        file: Path,
        source: str,
        path: JsonPath,
        kind: MediaKind,
        limits: tuple[float, float],
        shot_id: str | None,
    ) -> bool:
        """Whether a local file's length (read from its header) is within ``limits``."""
        try:
            length = self._memo().seconds(file)
        except UnreadableMedia as exc:
            self.add(
                path,
                f"cannot read the length of {source!r} ({exc.reason})",
                hint=exc.hint(),
                shot=shot_id,
            )
            return False
        low, high = limits
        measured = round(length, 3)
        if low <= measured <= high:
            return True
        what = "a reference video" if kind == "video" else kind
        name = Path(source).name
        hint = (
            f"cut it to {high:g} s, e.g. ffmpeg -i {name} -t {high:g} cut-{name}"
            if measured > high
            else f"use a longer {kind} file (at least {low:g} s)"
        )
        self.add(
            path,
            f"{source!r} lasts {measured:g} s; {what} must last {low:g}-{high:g} s",
            hint=hint,
            shot=shot_id,
        )
        return False

    def _keyframes(
        self,
        f: dict[str, Any],
        src: dict[str, JsonPath],
        spec: ModelSpec,
        seconds: float,
        shot_id: str,
    ) -> tuple[Keyframe, ...]:
        items = f.get("keyframes") or []
        path = src.get("keyframes", ())
        if len(items) > spec.max_keyframes:
            self.add(
                path,
                f"{spec.id} takes at most {spec.max_keyframes} keyframes, not {len(items)}",
                shot=shot_id,
            )
            return ()
        out: list[Keyframe] = []
        previous = 0.0
        for i, item in enumerate(items):
            at = float(item["at"])
            if not previous < at < seconds:
                if at >= seconds:
                    message = f"keyframe at {at} s is not inside the {seconds:g} s clip"
                else:
                    message = f"keyframe times must be strictly increasing ({at} after {previous})"
                self.add((*path, i, "at"), message, shot=shot_id)
            previous = max(previous, at)
            image = self._file(item["image"], (*path, i, "image"), "image", shot_id)
            if image is not None:
                out.append(Keyframe(at=at, image=image, tag=item.get("tag")))
        return tuple(out)

    def _refs(
        self, f: dict[str, Any], src: dict[str, JsonPath], spec: ModelSpec, shot_id: str
    ) -> tuple[Ref, ...]:
        items = f.get("refs") or []
        path = src.get("refs", ())
        low, high = spec.refs
        if items and not low <= len(items) <= high:
            self.add(path, f"{spec.id} takes {low}-{high} refs, not {len(items)}", shot=shot_id)
            return ()
        out: list[Ref] = []
        for i, item in enumerate(items):
            here = (*path, i)
            if isinstance(item, str):
                media = self._file(item, here, "image", shot_id)
                if media is not None:
                    out.append(Ref(images=(media,)))
                continue
            if not spec.tagged_refs:
                extra = sorted(set(item) - {"image"})
                if "images" in item or extra:
                    self.add(
                        here,
                        f"{spec.id} takes plain reference images; tags, grids and audio are V4 features",
                        hint="write the image path alone, e.g. - refs/bird.jpg",
                        shot=shot_id,
                    )
                    continue
            if "images" in item:
                imgs = [
                    self._file(img, (*here, "images", j), "image", shot_id)
                    for j, img in enumerate(item["images"])
                ]
                grid = True
            else:
                imgs = [self._file(item["image"], (*here, "image"), "image", shot_id)]
                grid = False
            audio = None
            if "audio" in item:
                audio = self._file(
                    item["audio"], (*here, "audio"), "audio", shot_id, spec.seconds_range("audio")
                )
            if all(m is not None for m in imgs):
                out.append(
                    Ref(
                        images=tuple(m for m in imgs if m is not None),
                        tag=item.get("tag"),
                        grid=grid,
                        audio=audio,
                    )
                )
        return tuple(out)

    def _trim(
        self, f: dict[str, Any], src: dict[str, JsonPath], seconds: float, shot_id: str
    ) -> Trim | None:
        if "trim" not in f:
            return None
        raw = f["trim"]
        path = src["trim"]
        start = float(raw.get("start", 0.0))
        end = float(raw["end"]) if "end" in raw else None
        if end is not None and end > seconds + 1e-6:
            self.add(
                (*path, "end"),
                f"trim end {end:g} s is past the end of the {seconds:g} s clip",
                shot=shot_id,
            )
        elif start >= (end if end is not None else seconds):
            self.add(
                (*path, "start"),
                f"trim start {start:g} s leaves nothing of the clip (ends at {end if end is not None else seconds:g} s)",
                shot=shot_id,
            )
        return Trim(start=start, end=end)

    def _transition(self, raw: Any, path: JsonPath) -> Transition | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            return Transition(raw, 0.0 if raw == "cut" else DEFAULT_TRANSITION_SECONDS)
        kind = raw["type"]
        default = 0.0 if kind == "cut" else DEFAULT_TRANSITION_SECONDS
        duration = float(raw.get("duration", default))
        if kind == "cut":
            duration = 0.0
        return Transition(kind, duration)

    def _card(self, raw: dict[str, Any], path: JsonPath, shot_id: str) -> Card:
        card = Card(
            text=raw["text"],
            duration=float(raw.get("duration", DEFAULT_CARD_SECONDS)),
            background=raw.get("background", "#000000"),
            color=raw.get("color", "#ffffff"),
        )
        for key in ("background", "color"):
            if key in raw and not _is_colour(raw[key]):
                self.add(
                    (*path, key),
                    f"{raw[key]!r} is not a colour",
                    hint="use #rrggbb or a CSS colour name",
                    shot=shot_id,
                )
        return card

    # -- shared sections -------------------------------------------------------------------

    def _output(self, data: dict[str, Any]) -> OutputSettings:
        raw = data.get("output") or {}
        path = self._cut_path(raw)
        soundtrack = None
        if "audio" in raw:
            media = self._file(raw["audio"]["path"], ("output", "audio", "path"), "audio", None)
            if media is not None and media.path is None:
                self.add(
                    ("output", "audio", "path"),
                    "the soundtrack must be a local file",
                    hint="download it into the storyboard's folder and give its path",
                )
                media = None
            if media is not None:
                soundtrack = Soundtrack(
                    media=media,
                    volume=float(raw["audio"].get("volume", 1.0)),
                    fade_out=float(raw["audio"].get("fade_out", 0.0)),
                )
        transition = self._transition(raw.get("transition"), ("output", "transition"))
        return OutputSettings(
            path=path,
            fps=int(raw.get("fps", 24)),
            resolution=raw.get("resolution", "720p"),
            aspect_ratio=raw.get("aspect_ratio", "16:9"),
            transition=transition or Transition(),
            audio=soundtrack,
            fit=raw.get("fit", "crop"),
        )

    def _cut_path(self, raw: dict[str, Any]) -> Path:
        """``output.path`` (default ``renders/<stem>.mp4``), checked to be a video file inside
        the storyboard's tree, for the live cut and the preview cut alike."""
        given = raw.get("path")
        written = given if isinstance(given, str) else f"renders/{self.doc.path.stem}.mp4"
        try:
            safe_output_path(self.root, written, suffixes=VIDEO_CONTAINERS, what="output")
            safe_output_path(self.root, preview_path(Path(written)), what="preview cut")
        except UnsafePath as exc:
            hint = exc.hint()
            if exc.reason in ("outside", "link"):
                hint = f"{hint}; to write the cut elsewhere, pass -o PATH to render"
            self.add(("output", "path"), str(exc), hint=hint)
        return self.root / written

    def _check_transitions(
        self,
        shots: list[Shot],
        raw_shots: list[Any],
        data: dict[str, Any],
        output: OutputSettings,
    ) -> None:
        """Every transition fits the footage it joins, as the stitcher measures it.

        The stitcher (``cutter._clamp``) silently shortens a transition to what both
        neighbours show: at most all of the next shot, and at most what the incoming
        transition left of this one. Here that is an error at the transition's line instead,
        counted in frames of the cut as the stitcher counts them. A shot shows its card's
        length, its trimmed length, and for an extension only its new footage; skipped shots
        are not in the cut, the last shot's transition joins nothing, and a pair next to an
        invalid shot is not judged.
        """
        built = {shot.index: shot for shot in shots}
        sequence: list[Shot | None] = []
        for i in range(len(raw_shots)):
            shot = built.get(i)
            if shot is None or not shot.skip:
                sequence.append(shot)
        fps = output.fps
        incoming = 0  # frames of `a` that the transition into it takes
        before: Transition | None = None  # that transition
        for a, b in itertools.pairwise(sequence):
            shown_a = _on_screen(a, fps) if a is not None else None
            shown_b = _on_screen(b, fps) if b is not None else None
            if a is None or b is None or shown_a is None or shown_b is None:
                incoming, before = 0, None
                continue
            transition = a.transition or output.transition
            want = round(transition.duration * fps) if transition.type != "cut" else 0
            fits = max(0, min(want, shown_a[0] - incoming, shown_b[0]))
            if fits < want:
                self._transition_too_long(
                    a, b, transition, raw_shots[a.index], data, fps, before, shown_a, shown_b
                )
            incoming, before = fits, transition

    def _transition_too_long(
        self,
        a: Shot,
        b: Shot,
        transition: Transition,
        raw_a: Any,
        data: dict[str, Any],
        fps: int,
        before: Transition | None,
        shown_a: tuple[int, str],
        shown_b: tuple[int, str],
    ) -> None:
        """Report the transition from ``a`` into ``b`` where it is written: on ``a``, in
        ``defaults`` or as ``output.transition`` (then naming the two shots is all that
        says which join it is)."""
        where: JsonPath
        if isinstance(raw_a, dict) and "transition" in raw_a:
            source, where = "shot", ("shots", a.index, "transition")
        elif (
            a.card is None
            and isinstance(data.get("defaults"), dict)
            and ("transition" in data["defaults"])
        ):
            source, where = "defaults", ("defaults", "transition")
        else:
            source, where = "output", ("output", "transition")
        if (*where, "duration") in self.doc.values:
            where = (*where, "duration")
        kind = f"{_seconds(transition.duration)} s {transition.type}"
        if source == "output":
            kind = f"default transition ({kind})"
        elif source == "defaults":
            kind = f"{kind} (from defaults)"
        between = f"the {kind} between {a.id!r} and {b.id!r}"
        (len_a, what_a), (len_b, what_b) = shown_a, shown_b
        want = round(transition.duration * fps)
        if want <= len_a and want <= len_b:
            # Each fits alone: the transition into `a` took the rest (the stitcher would
            # give this one only what that one left).
            into = f"{_seconds(before.duration)} s {before.type}" if before else "transition"
            most = _seconds(len_a / fps)
            self.add(
                where,
                f"{between} and the {into} into {a.id!r} together are longer than {a.id!r} "
                f"({what_a})",
                hint=f"the two transitions may take at most {most} s of {a.id!r} together: "
                f"shorten one, or lengthen {a.id!r}",
                shot=a.id,
            )
            return
        short, frames, what = (b, len_b, what_b) if len_b <= len_a else (a, len_a, what_a)
        most = f"{_seconds(frames / fps)} s"
        if source == "shot":
            hint = f"shorten the transition to at most {most}, or lengthen {short.id!r}"
        else:
            hint = (
                f"shorten {source}.transition to at most {most}, or give {a.id!r} its own "
                "transition"
            )
        self.add(where, f"{between} is longer than {short.id!r} ({what})", hint=hint, shot=a.id)

    def _check_beside(self) -> None:
        """The files written beside the storyboard (its lock, its store) do not lead out of
        its folder through a link: a pull request can add links as well as YAML."""
        beside = [(self.doc.path.with_suffix(".lock").name, "lock", False)]
        if not os.environ.get("STORYBOARD_CACHE"):  # a store the user chose may be anywhere
            beside.append((".storyboard", "store folder", True))
        for name, what, folder in beside:
            try:
                safe_output_path(self.root, name, what=what, folder=folder)
            except UnsafePath as exc:
                hint = exc.hint()
                if folder and exc.reason == "link":
                    hint = "remove the link; to keep the store elsewhere, set STORYBOARD_CACHE"
                self.add((), str(exc), hint=hint)

    def _render_settings(self, data: dict[str, Any]) -> RenderSettings:
        raw = data.get("render") or {}
        budget = raw.get("budget")
        return RenderSettings(
            budget=float(budget) if budget is not None else None,
            concurrency=dict(raw.get("concurrency") or {}),
        )


def _on_screen(shot: Shot, fps: int) -> tuple[int, str] | None:
    """How many frames of the cut ``shot`` fills (as the stitcher counts them), and how
    that is said in a message; ``None`` when a length is not a finite number."""
    if shot.card is not None:
        seconds, what = shot.card.duration, "a {} s card"
    elif shot.spec is not None:
        seconds = shot.spec.clip_seconds(shot.duration)
        what = "{} s of new footage" if shot.extends else "{} s"
        if shot.trim is not None:
            end = shot.trim.end if shot.trim.end is not None else seconds
            seconds, what = end - shot.trim.start, "{} s after trim"
    else:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    frames = max(1, round(seconds * fps))
    return frames, what.format(_seconds(frames / fps))


def _seconds(value: float) -> str:
    """Seconds for a message: at most two decimals, no trailing zeros (4.04, 1.5, 3)."""
    return f"{round(value, 2):g}"


def _clip_seconds(shot: Shot, earlier: dict[str, tuple[int, Shot | None]]) -> float:
    """The expected length of ``shot``'s clip: its new footage, plus its source's clip when
    its model returns the source too (``extends`` chains are followed upwards)."""
    seconds = 0.0
    current: Shot | None = shot
    for _ in range(len(earlier) + 1):  # ids are earlier shots only, so this ends
        if current is None or current.spec is None:
            break
        seconds += current.spec.clip_seconds(current.duration)
        if current.spec.extend_output != "source+new" or not current.extends:
            break
        current = earlier.get(current.extends, (0, None))[1]
    return seconds


def _section(json_path: str) -> str:
    """The top-level key a JSON path is under (``""`` for the root itself)."""
    rest = json_path[2:] if json_path.startswith("$.") else ""
    for i, ch in enumerate(rest):
        if ch in ".[":
            return rest[:i]
    return rest


def _shot_index(json_path: str) -> int:
    head = json_path[len("$.shots[") :]
    return int(head.split("]")[0]) if head[:1].isdigit() else -1


_REQUIRE_HINTS = {
    "first_frame": "add first_frame: refs/start.jpg (an image path or URL), or continues: <earlier shot>",
    "extends": "add extends: <id of an earlier shot> — this model extends an existing clip",
    "refs": "add refs: [refs/subject.jpg] with 1-4 reference images",
    "prompt": "add prompt: describing what happens in the shot",
}


def _media_memo(storyboard: Path) -> MediaMemo:
    """Media formats and lengths by digest: persisted beside the store's digest memo if the
    store exists.

    ``validate`` never creates the store; a storyboard rendered before reuses what its
    render learned (and the other way round).
    """
    from storyboard.cache import store_root  # only boards with local audio/video need it
    from storyboard.hashing import DigestMemo

    root = store_root(storyboard)
    if root.is_dir():
        return MediaMemo(root / "media.json", DigestMemo(root / "digests.json"))
    return MediaMemo()


def _field_hint(spec: ModelSpec, field: str, value: Any) -> str:
    """What to write instead of a reserved ``params`` key (``field``: "a" or "a/b")."""
    fields = field.split("/")
    taken = [name for name in fields if name in spec.accepts]
    if not taken:
        return f"{spec.id} takes no {fields[0]!r}: remove it from params"
    shown = _yaml_scalar(value)
    if len(taken) == 1 and shown is not None:
        return f"did you mean `{taken[0]}: {shown}` on the shot itself?"
    return "use the shot field " + " or ".join(repr(name) for name in taken) + " instead"


def _yaml_scalar(value: Any) -> str | None:
    """A short scalar as it would be written in YAML (``None`` for anything else)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str) or len(value) > 40 or "\n" in value:
        return None
    try:
        plain = yaml.safe_load(value) == value
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)


def _who_accepts(field: str) -> str:
    takers = [m.id for m in MODELS.values() if field in m.accepts]
    if not takers:
        return "no model takes this field"
    return "accepted by " + ", ".join(takers)


def _close(word: str, choices: Any) -> str | None:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else None


def _near_file(path: Path) -> str | None:
    folder = path.parent
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return f"the folder {folder.name!r} does not exist either" if folder.name else None
    match = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else "paths are relative to the storyboard file"


def _is_colour(value: str) -> bool:
    from PIL import ImageColor

    try:
        ImageColor.getrgb(value)
    except ValueError:
        return False
    return True
