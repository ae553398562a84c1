"""The Avatar Studio window (PySide6). Start it with `studio.gui.app.main`.

Layers: `model_files` and `settings` hold no Qt; `workers` run stages and renders off the GUI
thread; the widgets (`main_window`, `stage_page`, `dashboard`, `viewer`, `tracking_view`,
`models_dialog`) only talk to the pipeline through `studio.pipeline` and `studio.avatar`.
"""
