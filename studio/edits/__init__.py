"""Appearance edits (issue 14): text edits (StyleCLIP), directions (GANSpace), saved per project.

`model` (Edit, EditSet, apply_edits), `adapters` (what an edit acts on per engine), `styleclip`
(latent optimisation with a CLIP checkpoint), `ganspace` (principal directions), `evaluate`.
"""
