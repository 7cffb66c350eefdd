"""Stage 2d, validate: from a loaded document to a typed, templated, checked Storyboard.

``load_storyboard`` chains the document stages: load (YAML with positions), schema (JSON
Schema of format v1), templating (Jinja2 sandbox), then walks the document: it merges
defaults, reads the files a shot names and checks each shot against the rules of its model
(:mod:`storyboard.rules`, data over the catalogue) and the storyboard's own (unique ids,
upstream shots). Every problem found is reported together, each at its ``FILE:LINE:COL``;
places stay tuples of keys and indexes (``("shots", 2, "duration")``) until then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyboard import boardcache, rules
from storyboard.catalog import MODELS, ModelSpec
from storyboard.errors import InvalidStoryboard, Problem
from storyboard.loader import Document, JsonPath, load, storyboard_path
from storyboard.model import (
    AUTO,
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
    resolve_output,
)
from storyboard.paths import VIDEO_CONTAINERS, UnsafePath, preview_path, safe_output_path
from storyboard.rules import Finding
from storyboard.schema import validate_schema
from storyboard.suggest import did_you_mean

if TYPE_CHECKING:
    from storyboard.templating import Templater

__all__ = ["load_storyboard"]

# Fields that name other shots or identify this one: never templates.
_NOT_TEMPLATED = frozenset({"id", "extends", "continues"})
# The only fields a title card may carry.
_CARD_FIELDS = frozenset({"id", "card", "transition", "skip"})
DEFAULT_TRANSITION_SECONDS = 0.5
DEFAULT_CARD_SECONDS = 2.0


def load_storyboard(
    file: str | Path, *, overrides: Mapping[str, Any] | None = None, remember: bool = False
) -> Storyboard:
    """Load, template and check a storyboard file.

    A storyboard checked before, while nothing it reads has changed, comes from the store's
    cache of checked documents without being parsed, validated or templated again
    (:mod:`storyboard.boardcache`).

    Args:
        file: path of the storyboard YAML.
        overrides: ``--set`` values; they replace ``vars`` of the same name.
        remember: keep the checked storyboard in its project's store (when the store
            exists) for the next check; the pipeline does, read-only callers (gc) do not.

    Returns:
        The storyboard with every template rendered and every default applied.

    Raises:
        InvalidStoryboard: with every problem found, each located in the file.
    """
    values = dict(overrides or {})
    cached = boardcache.cached(storyboard_path(file), values, write=remember)
    if cached is not None:
        return cached
    started = time.time_ns()
    doc = load(file)
    checker = _Checker(doc, values)
    board = checker.run()
    if remember:
        boardcache.keep(board, values, doc.digest, started, checker.templater.included)
    return board


class _Checker:
    def __init__(self, doc: Document, overrides: dict[str, Any]) -> None:
        self.doc = doc
        self.overrides = overrides
        self.problems: list[Problem] = []
        self.root = doc.path.parent
        self.inputs = rules.Inputs(doc.path)

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
            self.inputs.save()

    def _run(self) -> Storyboard:
        data = self.doc.data
        if not isinstance(data, dict):
            self.add((), "a storyboard is a mapping with `storyboard: 1` and `shots:`")
            raise InvalidStoryboard(self.problems)
        raw_vars = data.get("vars")
        variables: dict[str, Any] = dict(raw_vars) if isinstance(raw_vars, dict) else {}
        variables.update(self.overrides)
        title = data.get("title") if isinstance(data.get("title"), str) else None
        # Imported here: a cached storyboard (the usual no-op) never loads Jinja.
        from storyboard.templating import TemplateProblem, Templater, unread_overrides

        self.template_problem = TemplateProblem
        self.templater: Templater = Templater(self.root, variables, title)
        # A --set nothing reads would be silently ignored (a typo): an error at `vars:`.
        defined = raw_vars if isinstance(raw_vars, dict) else {}
        unread, known = unread_overrides(self.templater, self.overrides, defined, data)
        for name in unread:
            self.add(
                ("vars",) if isinstance(raw_vars, dict) else (),
                f"--set {name}: the storyboard has no variable {name!r} (not in vars:, and no "
                "template reads it)",
                hint=did_you_mean(name, known)
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
                except self.template_problem:
                    shown[key] = value
            rendered["defaults"] = shown
        schema_problems = validate_schema(self.doc, rendered)
        self.problems.extend(schema_problems)
        broken = {p.where[0] if p.where else "" for p in schema_problems}
        if "" in broken or "storyboard" in broken or not isinstance(raw_shots, list):
            # Not a storyboard at all: shot checks would only add noise.
            raise InvalidStoryboard(self.problems)
        bad_shots = {
            p.where[1]
            for p in schema_problems
            if p.where[:1] == ("shots",) and len(p.where) > 1 and isinstance(p.where[1], int)
        }
        if "defaults" in broken:
            # Check the shots without the defaults fields that are themselves wrong.
            bad_keys = {
                p.where[1]
                for p in schema_problems
                if p.where[:1] == ("defaults",) and len(p.where) > 1
            }
            defaults = data.get("defaults")
            defaults = defaults if isinstance(defaults, dict) else {}
            data = {**data, "defaults": {k: v for k, v in defaults.items() if k not in bad_keys}}
        shots = self._shots(rendered, data, bad_shots)
        output = (
            self._output(data, shots) if "output" not in broken else OutputSettings(path=self.root)
        )
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
            except self.template_problem as exc:
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
            message, hint = rules.unknown_model(model_id)
            self.add(sources["model"], message, hint=hint, shot=shot_id)
            return None

        for key in sorted(own):
            finding = rules.not_accepted(spec, key)
            if finding is not None:
                self.report(finding, sources, base, shot_id)
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

    def report(
        self, finding: Finding, src: Mapping[str, JsonPath], base: JsonPath, shot_id: str
    ) -> None:
        """A rule's finding, at its field's place (the shot itself when it has none)."""
        path = (*src.get(finding.field, base), *finding.below)
        self.add(path, finding.message, hint=finding.hint, key=finding.key, shot=shot_id)

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
        base: JsonPath = ("shots", index)
        for finding in rules.check_model_fields(spec, f):
            self.report(finding, src, base, shot_id)
        duration = f.get("duration")
        seconds = spec.clip_seconds(duration)

        # Upstream shots: earlier ones only, which also rules out cycles.
        for rel in ("extends", "continues"):
            if rel in f:
                self._check_upstream(rel, f[rel], src[rel], shot_id, index, earlier, spec)

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

        trim = self._trim(f, src, seconds, shot_id)
        transition = self._transition(f.get("transition"), src.get("transition", ()))
        if len(self.problems) > before:
            return None
        return Shot(
            id=shot_id,
            index=index,
            line=line,
            model=spec.id,
            prompt=f.get("prompt", ""),
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
            takes=int(f.get("takes", 1)),
            select=int(f.get("select", 1)),
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
                    hint=did_you_mean(target, earlier) or "use the id of an earlier shot",
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
        elif rel == "extends" and (
            found := rules.extension_source(spec, target, rules.clip_seconds(upstream, earlier))
        ):
            message, hint = found
            self.add(path, message, hint=hint, shot=shot_id)

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
        found = self.inputs.check(source, kind, seconds)
        if isinstance(found, Media):
            return found
        message, hint = found
        self.add(path, message, hint=hint, shot=shot_id)
        return None

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
        too_many = rules.keyframe_count(spec, len(items))
        if too_many is not None:
            self.add(path, too_many, shot=shot_id)
            return ()
        out: list[Keyframe] = []
        previous = 0.0
        for i, item in enumerate(items):
            at = float(item["at"])
            misplaced = rules.keyframe_time(at, previous, seconds)
            if misplaced is not None:
                self.add((*path, i, "at"), misplaced, shot=shot_id)
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
        wrong_count = rules.refs_count(spec, len(items))
        if wrong_count is not None:
            self.add(path, wrong_count, shot=shot_id)
            return ()
        out: list[Ref] = []
        for i, item in enumerate(items):
            here = (*path, i)
            if isinstance(item, str):
                media = self._file(item, here, "image", shot_id)
                if media is not None:
                    out.append(Ref(images=(media,)))
                continue
            not_plain = rules.plain_ref(spec, item)
            if not_plain is not None:
                self.add(here, not_plain[0], hint=not_plain[1], shot=shot_id)
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
        wrong = rules.trim_findings(start, end, seconds)
        if wrong is not None:
            self.add((*path, wrong[0]), wrong[1], shot=shot_id)
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
            if key in raw and not rules.is_colour(raw[key]):
                self.add(
                    (*path, key),
                    f"{raw[key]!r} is not a colour",
                    hint="use #rrggbb or a CSS colour name",
                    shot=shot_id,
                )
        return card

    # -- shared sections -------------------------------------------------------------------

    def _output(self, data: dict[str, Any], shots: list[Shot]) -> OutputSettings:
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
        fps, resolution = (raw.get(k, AUTO) for k in ("fps", "resolution"))
        fps, resolution, aspect_ratio, auto = resolve_output(
            shots,
            fps=None if fps == AUTO else int(fps),
            resolution=None if resolution == AUTO else resolution,
            aspect_ratio=raw.get("aspect_ratio"),
        )
        return OutputSettings(
            path=path,
            fps=fps,
            resolution=resolution,
            aspect_ratio=aspect_ratio,
            transition=transition or Transition(),
            audio=soundtrack,
            fit=raw.get("fit", "crop"),
            auto=auto,
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
        neighbours show; here that is an error at the transition's line instead
        (:func:`storyboard.rules.transition_overruns`). A shot shows its card's length, its
        trimmed length, and for an extension only its new footage; skipped shots are not in
        the cut, the last shot's transition joins nothing, and a pair next to an invalid shot
        is not judged.
        """
        built = {shot.index: shot for shot in shots}
        sequence: list[Shot | None] = []
        for i in range(len(raw_shots)):
            shot = built.get(i)
            if shot is None or not shot.skip:
                sequence.append(shot)
        for overrun in rules.transition_overruns(sequence, output.transition, output.fps):
            self._transition_too_long(overrun, raw_shots[overrun.a.index], data, output.fps)

    def _transition_too_long(
        self, overrun: rules.Overrun, raw_a: Any, data: dict[str, Any], fps: int
    ) -> None:
        """Report the transition from ``a`` into ``b`` where it is written: on ``a``, in
        ``defaults`` or as ``output.transition``."""
        a = overrun.a
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
        message, hint = rules.overrun_text(overrun, source, fps)
        self.add(where, message, hint=hint, shot=a.id)

    def _check_beside(self) -> None:
        """The files written beside the storyboard (its lock, its store) do not lead out of
        its folder through a link: a pull request can add links as well as YAML."""
        # The project's store (at its root: storyboard.toml or .git upwards); a broken
        # storyboard.toml is an error at its own line (ProjectConfigError).
        for root, name, what, folder in list(boardcache.beside(self.doc.path)):
            try:
                safe_output_path(root, name, what=what, folder=folder)
            except UnsafePath as exc:
                hint = exc.hint()
                if folder and exc.reason == "link":
                    hint = (
                        "remove the link; to keep the store elsewhere, set [store] path in "
                        "storyboard.toml or STORYBOARD_CACHE"
                    )
                self.add((), str(exc), hint=hint)

    def _render_settings(self, data: dict[str, Any]) -> RenderSettings:
        raw = data.get("render") or {}
        budget = raw.get("budget")
        return RenderSettings(
            budget=float(budget) if budget is not None else None,
            concurrency=dict(raw.get("concurrency") or {}),
        )
