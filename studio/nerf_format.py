"""The file format of a trained LatentAvatar engine, shared by the `nerf` stage (writer) and
`studio.engines.nerf` (reader): ``nerf/model.safetensors`` (state_dict) + ``nerf/avatar.json``
(``format``, model config, control names and ranges, training figures)."""
FORMAT = "latentavatar-1"
