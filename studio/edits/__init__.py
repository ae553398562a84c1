"""Appearance edits (issue 14): text edits (StyleCLIP), directions (GANSpace), saved per project.

`model` (Edit, EditSet, apply_edits), `adapters` (what an edit acts on per engine), `styleclip`
(latent optimisation with a CLIP checkpoint), `global_directions`, `ganspace` (principal
directions), `evaluate`, and `jobs`: what the CLI and the GUI run (find a text edit, compute
directions, list, remove; progress, cancel, resume, the project lock), with the jobs themselves in
`text_jobs`, `global_jobs` and `direction_jobs` and what they share in `job_helpers`. Rendering with
edits goes through `studio.avatar.Avatar.render(..., edits={name: strength})`.
"""
