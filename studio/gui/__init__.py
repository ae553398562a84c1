"""The Avatar Studio window (PySide6). Start it with `studio.gui.app.main`.

Layers: the rules live in the Qt-free `studio.session` (and `studio.model_files`); `workers` relay
stages and renders run off the GUI thread (the child processes are in `studio.workers`); the widgets
(`main_window`, `stage_page`, `dashboard`, `viewer`, `tracking_view`, `models_dialog`) bind to those.
"""
