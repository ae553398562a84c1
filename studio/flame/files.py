"""Loading the user's FLAME files for the app: FLAME's own reader errors become one-line
`InputError`s that say which file to add and how."""
from __future__ import annotations

import os

from models.flame import FLAME
from models.flame_pickle import (FlameFileError, LandmarkEmbedding, read_eyelid_blendshapes, read_flame_model,
                                 read_mediapipe_embedding)

from ..errors import InputError

ADD_HINT = ("add FLAME's files (free registration at flame.is.tue.mpg.de) with "
            "`avatar-studio models add flame generic_model.pkl` and "
            "`avatar-studio models add flame-mediapipe mediapipe_landmark_embedding.npz`")


def load_flame(model_path: str | os.PathLike, embedding_path: str | os.PathLike,
               eyelid_paths: tuple[str | os.PathLike, str | os.PathLike] | None = None,
               device: str = "cpu") -> tuple[FLAME, LandmarkEmbedding]:
    """The FLAME layer and its MediaPipe landmark embedding, checked against each other.

    eyelid_paths: optional (l_eyelid.npy, r_eyelid.npy) blendshapes (metrical-tracker's).
    Raises InputError (message: what is wrong with which file; hint: what to add).
    """
    try:
        data = read_flame_model(model_path)
        if eyelid_paths is not None:
            data.eyelid_dirs = read_eyelid_blendshapes(*eyelid_paths, n_vertices=len(data.v_template))
        emb = read_mediapipe_embedding(embedding_path)
        emb.check(len(data.faces))
    except FlameFileError as exc:
        raise InputError(str(exc), ADD_HINT) from None
    return FLAME(**data.arrays()).to(device), emb
