"""Driving the avatar with another person: LatentAvatar's learned, template-free transfer.

- `config`: the settings (`DriveConfig`) and the preview / quality presets;
- `data`: the two people's aligned face images as the Y-shaped network reads them;
- `training`: one step of the Y-shaped network (one person per step, the other decoder frozen,
  reconstruction + cycle) and of a mapping MLP;
- `job`: `train_actor` — track the actor, train through the training loop (resumable,
  cancellable, progress with an actor | avatar preview), keep the result in ``drivers/``;
- `actors`: the per-actor folder: state, listing, loading a trained actor;
- `transfer`: the learned transfer as a `studio.motion.Motion` for export;
- `measure`: figures (γ separability, same-person check, mapping accuracy);
- `worker`: the training in the GUI's child process (no Qt).

The networks themselves are in `models.yshape`. Importing this package imports no torch.
"""
