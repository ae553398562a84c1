"""A Qt-free studio session: one open project and the rules for working on it.

Both front ends drive the app through this: the CLI calls it directly, the GUI's main window
binds widgets to it (and runs `Session.run` in a child process so the window stays smooth).
Rules kept here, once:

- which stages to run for a target: a stage and every upstream stage not done (`plan_stage`),
  or every stage an engine needs that is not done (`plan_engine`);
- presets: switching the preset moves every stage not run yet to the new preset's settings,
  finished stages keep theirs (`set_preset`); `reset_config` puts one stage back on the preset;
- a run that died (killed, crashed) is "interrupted", never "running" (`studio.lock`);
- what `status` and the window say about each stage (`stage_line`, `engine_lines`).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .config import to_dict
from .engines import ENGINES, chain, engine, required
from .errors import ProjectError
from .pipeline import (ProgressFn, interruption, next_stage, run_pipeline, same_config, set_stage_config, spec,
                       stage_config, stage_state)
from .progress import Control
from .project import Project
from .stages import REGISTRY

PRESETS = ("preview", "quality")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class StageView:
    """What a front end shows for one stage."""

    name: str
    title: str
    state: str
    """pending, running, interrupted, cancelled, failed, stale or done."""
    seconds: float | None
    summary: dict
    note: str
    """One line: an error, the interruption point, or a warning (e.g. cut short by a time cap)."""


class Session:
    def __init__(self, project: Project):
        self.project = project

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | Path) -> "Session":
        return cls(Project.open(root))

    @classmethod
    def create(cls, root: str | Path, video: str | Path, preset: str = "preview", device: str = "auto") -> "Session":
        return cls(Project.create(Path(root), Path(video), preset=preset, device=device))

    def reload(self) -> None:
        """Read the manifest again (another process, e.g. a stage worker, wrote it)."""
        self.project.manifest = Project.open(self.project.root).manifest

    # ------------------------------------------------------------------ state
    def state(self, name: str) -> str:
        return stage_state(self.project, name)

    def states(self) -> dict[str, str]:
        return {n: self.state(n) for n in REGISTRY}

    def stage_view(self, name: str) -> StageView:
        rec = self.project.record(name)
        st = self.state(name)
        summary = (rec.get("result") or {}).get("summary") or {} if st in ("done", "stale") else {}
        if st == "interrupted":
            note = interruption(self.project, name)
        elif st in ("failed", "cancelled"):
            note = rec.get("error") or ("cancelled — run it again to resume" if st == "cancelled" else "")
        else:
            note = "; ".join(rec.get("warnings") or []) if st in ("done", "stale") else ""
        return StageView(name=name, title=REGISTRY[name].title, state=st, seconds=rec.get("seconds"),
                         summary=summary, note=note)

    def trained_engines(self) -> list[str]:
        return [e for e in ENGINES if all(self.state(s) == "done" for s in required(e))]

    def engine_lines(self) -> list[str]:
        """One line per engine: trained, or the next command."""
        out = []
        for name, e in ENGINES.items():
            nxt = next_stage(self.project, name)
            if nxt is None:
                out.append(f"{e.title}: trained")
            else:
                out.append(f"{e.title}: next → avatar-studio run-stage {shlex.quote(str(self.project.root))} {nxt}")
        return out

    # ------------------------------------------------------------------ planning
    def plan_stage(self, name: str) -> list[str]:
        """`name` and every upstream stage that is not done, in run order."""
        spec(name)
        need: set[str] = set()

        def visit(n: str) -> None:
            for up in REGISTRY[n].depends(self.config(n)):
                if up in REGISTRY and self.state(up) != "done" and up not in need:
                    need.add(up)
                    visit(up)

        visit(name)
        return [n for n in REGISTRY if n in need] + [name]

    def plan_engine(self, choice: str, overrides: dict[str, dict] | None = None) -> list[str]:
        """Stages of engine `choice` ("both" = every engine) that will run, in run order: those not done,
        those whose settings `overrides` ({stage: {setting: value}}, as `--set` gives them) change, and
        every stage after one of those that depends on it (it would be stale once that one runs)."""
        overrides = overrides or {}
        names = list(ENGINES) if choice == "both" else [engine(choice).name]
        cfgs = {n: stage_config(self.project, n, overrides.get(n)) for n in REGISTRY}
        wanted = {s for n in names for s in chain(n)}
        # stages a setting brings in (e.g. `flame` when the engine's controls are FLAME's)
        wanted |= {up for s in list(wanted) for up in REGISTRY[s].depends(cfgs[s]) if up in REGISTRY}
        plan: list[str] = []
        for n in REGISTRY:
            if n not in wanted:
                continue
            changed = bool(overrides.get(n)) and not same_config(self.project.record(n), cfgs[n])
            if self.state(n) != "done" or changed or any(up in plan for up in REGISTRY[n].depends(cfgs[n])):
                plan.append(n)
        return plan

    def set_controls(self, choice: str, controls: str) -> list[str]:
        """Train engine `choice` ("both" = every engine) on control set `controls` ("named" or
        "flame"): saved in each of its stages that has a `controls` setting. Returns those stages."""
        import dataclasses

        names = list(ENGINES) if choice == "both" else [engine(choice).name]
        changed = []
        for s in dict.fromkeys(st for n in names for st in chain(n)):
            fields = {f.name: f for f in dataclasses.fields(REGISTRY[s].config_cls)}
            if "controls" in fields:
                allowed = fields["controls"].metadata.get("choices") or ()
                if allowed and controls not in allowed:
                    raise ProjectError(f"unknown control set '{controls}'", f"control sets: {', '.join(allowed)}")
                if getattr(self.config(s), "controls") != controls:
                    self.set_config(s, {"controls": controls})
                changed.append(s)
        return changed

    def controls(self, engine_name: str | None) -> str:
        """The control set ("named" or "flame") engine `engine_name` is trained on, as `set_controls` saved it: the
        `controls` setting of its stages (a trained engine's stages ran with their saved settings, or they would
        be out of date). "named" for an unknown engine. No model is loaded."""
        if engine_name not in ENGINES:
            return "named"
        for s in (st for st in chain(engine_name) if st in REGISTRY):
            controls = getattr(self.config(s), "controls", None)
            if controls:
                return str(controls)
        return "named"

    # ------------------------------------------------------------------ settings
    def change(self, what: str, change):
        """Make a change to project.json the way every settings change must be made: under the project's lock
        (`what` names it for anyone who finds the project busy), applied to the manifest as it is on disk
        now — a stage process or another program may have written it since this session read it, and
        writing an older copy would undo their records. `change(session)` makes the change; its result is
        returned. A project another process works on raises `StudioError` and nothing is written. The CLI's
        `config` and `run` and the window's settings pages all change settings through this."""
        from .lock import project_lock

        with project_lock(self.project.root, what):
            self.reload()
            return change(self)

    def set_preset(self, preset: str) -> list[str]:
        """Stages not run yet follow the new preset; finished (or running) stages keep their settings.
        Returns the stages that keep them, in run order."""
        if preset not in PRESETS:
            raise ProjectError(f"unknown preset '{preset}'", f"presets: {', '.join(PRESETS)}")
        m = self.project.manifest
        m["preset"] = preset
        kept = []
        for name, rec in m["stages"].items():
            if "config" not in rec:
                continue
            if rec.get("status") in ("done", "running"):
                kept.append(name)
            else:
                rec.pop("config")
        self.project.save()
        return [n for n in REGISTRY if n in kept]

    def set_device(self, device: str) -> None:
        if device not in DEVICES + ("gpu",):
            raise ProjectError(f"unknown device '{device}'", f"devices: {', '.join(DEVICES)}")
        self.project.manifest["device"] = device
        self.project.save()

    def config(self, name: str) -> Any:
        return stage_config(self.project, name)

    def set_config(self, name: str, values: dict) -> Any:
        """Save changed settings; the stage and every stage after it become stale."""
        return set_stage_config(self.project, name, values)

    def reset_config(self, name: str) -> bool:
        """Put a stage back on the project's preset (not while it runs). Returns whether it changed.

        A stage that has trained keeps the preset's settings written in its record, so that it (and every stage
        after it) shows as stale when they differ from the ones it trained with and trains again on the next
        run; a stage that never ran just forgets its saved settings and follows the preset from then on."""
        from .lock import held_here

        rec = self.project.manifest["stages"].get(name)
        # "running" under this process's own lock (`config --reset` takes it) is a run that died, not one going on
        if not rec or "config" not in rec or (self.state(name) == "running" and not held_here(self.project.root)):
            return False
        if rec.get("config_hash"):
            preset = to_dict(spec(name).preset(self.project.preset))
            if rec["config"] == preset:
                return False
            rec["config"] = preset
        else:
            rec.pop("config")
        self.project.save()
        return True

    # ------------------------------------------------------------------ running
    def run(self, stages: Iterable[str], *, overrides: dict[str, dict] | None = None, force: Iterable[str] = (),
            control: Control | None = None, on_progress: ProgressFn | None = None,
            device: str | None = None, on_stage_done=None) -> dict[str, dict]:
        """Run `stages` in this process (holding the project's lock); see `studio.pipeline.run_pipeline`."""
        return run_pipeline(self.project, stages, overrides=overrides, control=control, on_progress=on_progress,
                            device=device, force=force, on_stage_done=on_stage_done)

    def force_for(self, name: str) -> tuple[str, ...]:
        """Running a stage that is already done means "train it again": force it."""
        return (name,) if self.state(name) == "done" else ()
