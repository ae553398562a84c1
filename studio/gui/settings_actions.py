"""The studio window's settings: a stage's settings edited or reset on its page, the preset and device boxes,
written into project.json through the project's `Session`."""
from __future__ import annotations

from ..errors import StudioError
from .run_actions import _title


class SettingsActions:
    """A mixin of `MainWindow` (studio/gui/main_window.py). Uses the window's `project`, `gpu_available`; its
    widgets `stage_page`, `viewer`, `export_panel`, `preset_box`, `device_box`; and `refresh_stages` (the
    window), `check_project` (`ProjectActions`), `reload_manifest` (`RunActions`)."""

    # ------------------------------------------------------------------ settings
    @property
    def session(self):
        """The Qt-free session over the open project (the rules live there, not in the window)."""
        from ..session import Session

        return Session(self.project) if self.project is not None else None

    def _change_settings(self, what: str, change) -> bool:
        """Write a settings change into project.json as `avatar-studio config` does (`Session.change`: under
        the project's lock, on the manifest as it is on disk now). `change(session)` makes the change. When
        another process works on the project nothing is written and the status line says so. Returns whether
        it was saved."""
        try:
            self.session.change(f"the window: {what}", change)
        except StudioError as exc:
            self.statusBar().showMessage(f"Not saved: {exc}", 15000)
            self.reload_manifest()
            return False
        return True

    def _settings_changed(self) -> None:
        """After a settings change: the stage list, and the viewer and Export pages (a trained avatar whose
        settings changed is out of date: it is no longer offered there, and they say why)."""
        self.refresh_stages()
        from ..avatar import trained_engines

        if trained_engines(self.project) != self.viewer.engines():
            self.viewer.set_project(self.project)
        self.export_panel.refresh()

    def _config_edited(self, name: str, values: dict) -> None:
        if self.project is None or not self.check_project():
            return
        from ..config import to_dict
        from ..pipeline import stage_config

        try:
            if to_dict(stage_config(self.project, name, values)) == to_dict(stage_config(self.project, name)):
                return  # nothing changed (the page hands its values over whenever it is left)
        except StudioError as exc:
            self.statusBar().showMessage(f"Not saved: {exc}", 8000)
            return
        if not self._change_settings(f"settings of {name}", lambda session: session.set_config(name, values)):
            if self.stage_page.stage == name:
                self.stage_page.show_stage(self.project, name)  # the form shows what is saved
            return
        self._settings_changed()

    def _reset_config(self, name: str) -> None:
        if self.project is None or not self.check_project():
            return
        changed = []
        self._change_settings(f"reset {name}", lambda session: changed.append(session.reset_config(name)))
        self.stage_page.show_stage(self.project, name)
        self._settings_changed()
        if any(changed):
            again = self.session.state(name) == "stale"
            self.statusBar().showMessage(f"{_title(name)}: back on the {self.project.preset} preset's settings"
                                         + ("; it and the stages after it will train again" if again else ""), 8000)

    def _preset_changed(self) -> None:
        if self.project is None or not self.check_project():
            return
        preset = self.preset_box.currentData()
        saved = self._change_settings("preset", lambda session: session.set_preset(preset))
        if not saved:
            self._show_saved_choices()
        if self.stage_page.stage:
            self.stage_page.show_stage(self.project, self.stage_page.stage)
        self._settings_changed()
        if saved:
            self.statusBar().showMessage(f"Preset {preset}: stages not run yet use its settings; finished stages "
                                         "keep theirs (Reset to preset on a stage to switch it).", 8000)

    def _device_changed(self) -> None:
        if self.project is not None and self.check_project():
            device = self.device_box.currentData()
            if not self._change_settings("device", lambda session: session.set_device(device)):
                self._show_saved_choices()

    def _show_saved_choices(self) -> None:
        """The preset and device boxes show what the project has saved (after a change was refused)."""
        for box, value in ((self.preset_box, self.project.preset), (self.device_box, self.project.device)):
            box.blockSignals(True)
            box.setCurrentIndex(max(0, box.findData(value if value != "gpu" else "cuda")))
            box.blockSignals(False)

    def _gpu_detected(self, available: bool) -> None:
        self.gpu_available = bool(available)
        self.device_box.model().item(2).setEnabled(self.gpu_available)
        if not self.gpu_available:
            self.device_box.setItemText(2, "GPU (none found)")
