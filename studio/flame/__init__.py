"""FLAME in the app: fitting FLAME to tracked landmarks (`fit`), drawing the fitted mesh
(`overlay`) and reading / writing per-frame FLAME parameter sequences (`sequences`)."""
