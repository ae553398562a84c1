"""The FLAME head model as a PyTorch layer.

FLAME (Li, Bolkart, Black, Li, Romero: "Learning a model of facial shape and expression from 4D
scans", SIGGRAPH Asia 2017) is a linear-blend-skinned mesh with J = 5 joints (global, neck, jaw,
left eye, right eye) and V vertices (5023 in the released model):

    T_P(β, ψ, θ) = T̄ + B_S(β) + B_E(ψ) + B_P(θ)          rest pose with offsets
    J(β, ψ)      = 𝒥 (T̄ + B_S(β) + B_E(ψ))                 joints regressed from the shaped mesh
    M(β, ψ, θ)   = W(T_P, J, θ, 𝒲)                          linear blend skinning

B_S and B_E are the shape and expression blendshapes (linear in β and ψ), B_P the pose correctives:
linear in the rotation matrices minus identity of the four non-root joints (4 x 9 = 36 features).
Landmarks lie on the surface through an embedding: one triangle and barycentric coordinates each.

Dimension names: B batch, V vertices, J joints, S shape components, E expression components,
K a subset of vertices, L landmarks, F triangles. Units are the model's (metres for FLAME);
y up, z towards the viewer.

Reading the released files is `models.flame_pickle`; this module holds only the network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

JOINT_NAMES = ("global", "neck", "jaw", "eye_left", "eye_right")
"""FLAME's joints in kinematic order (the order of its `kintree_table`)."""


def _check(x: torch.Tensor, shape: list, name: str) -> None:
    """Raise ValueError unless `x` has `shape` (None matches any size)."""
    ok = x.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) → rotation matrices (..., 3, 3).

    R = I + sin θ/θ · K + (1 − cos θ)/θ² · K², K the cross-product matrix of the axis-angle vector;
    near θ = 0 both factors use their Taylor series, so values and gradients are exact there too.
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rodrigues: expected (..., 3) axis-angle vectors, got {tuple(rotvec.shape)}")
    theta2 = (rotvec * rotvec).sum(-1)[..., None, None]                     # (..., 1, 1)
    small = theta2 < 1e-6
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0, (1.0 - torch.cos(theta)) / safe2)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * K + b * (K @ K)


def skin(vertices: torch.Tensor, joints: torch.Tensor, rotations: torch.Tensor, parents: list[int],
         weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear blend skinning along a kinematic chain.

    vertices: (B, K, 3) rest-pose vertices (with blendshape offsets); joints: (B, J, 3) rest joints;
    rotations: (B, J, 3, 3) local joint rotations; parents: J indices, parents[0] = -1 and
    parents[j] < j; weights: (K, J) skinning weights. Returns posed vertices (B, K, 3) and posed
    joints (B, J, 3).
    """
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.cat([rotations, rel[..., None]], dim=-1)                   # (B, J, 3, 4)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=joints.dtype, device=joints.device).expand(B, J, 1, 4)
    local = torch.cat([local, bottom], dim=-2)                               # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, J):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)                                        # (B, J, 4, 4)
    posed_joints = world[..., :3, 3]
    # transform that takes a rest-pose point (not a joint-relative one) to its posed place
    rot = world[..., :3, :3]
    trans = posed_joints - (rot @ joints[..., None])[..., 0]
    A = torch.cat([rot, trans[..., None]], dim=-1)                           # (B, J, 3, 4)
    T = torch.einsum("kj,bjmn->bkmn", weights, A)                            # (B, K, 3, 4)
    posed = (T[..., :3] @ vertices[..., None])[..., 0] + T[..., 3]
    return posed, posed_joints


def embed_landmarks(vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor,
                    bary: torch.Tensor) -> torch.Tensor:
    """Points on a mesh from an embedding: vertices (B, V, 3), faces (F, 3), face_idx (L,),
    bary (L, 3) → (B, L, 3) = Σ_k bary[l, k] · vertices[faces[face_idx[l], k]]."""
    tri = vertices[:, faces[face_idx]]                                       # (B, L, 3, 3)
    return (tri * bary[None, :, :, None]).sum(-2)


@dataclass
class FlameOutput:
    vertices: torch.Tensor
    """(B, V, 3) posed vertices, or (B, K, 3) when `vertex_ids` was given."""
    joints: torch.Tensor
    """(B, J, 3) posed joints."""


class FLAME(nn.Module):
    """FLAME: shape, expression, pose correctives and skinning → vertices.

    Built from plain arrays (see `models.flame_pickle.read_flame_model` for the released files).
    Optional eyelid blendshapes (metrical-tracker's l_eyelid / r_eyelid) join the expression
    offsets when given.
    """

    def __init__(self,
                 v_template: np.ndarray,          # (V, 3) mean head
                 shapedirs: np.ndarray,           # (V, 3, S) identity blendshapes
                 exprdirs: np.ndarray,            # (V, 3, E) expression blendshapes
                 posedirs: np.ndarray,            # (V, 3, 9 (J-1)) pose correctives
                 j_regressor: np.ndarray,         # (J, V) joints from the shaped mesh
                 parents: np.ndarray,             # (J,) parent joint, -1 for the root
                 lbs_weights: np.ndarray,         # (V, J) skinning weights
                 faces: np.ndarray,               # (F, 3) triangles
                 eyelid_dirs: np.ndarray | None = None,  # (V, 3, 2) left / right eyelid closing
                 ):
        super().__init__()
        V = int(np.asarray(v_template).shape[0])
        J = int(np.asarray(parents).shape[0])
        if J != len(JOINT_NAMES):
            raise ValueError(f"FLAME has {len(JOINT_NAMES)} joints {JOINT_NAMES}, the arrays give {J}")

        def f32(a):
            return torch.as_tensor(np.asarray(a, np.float64), dtype=torch.float32)

        shapes = {"v_template": (v_template, (V, 3)), "shapedirs": (shapedirs, (V, 3, None)),
                  "exprdirs": (exprdirs, (V, 3, None)), "posedirs": (posedirs, (V, 3, 9 * (J - 1))),
                  "j_regressor": (j_regressor, (J, V)), "lbs_weights": (lbs_weights, (V, J)),
                  "faces": (faces, (None, 3))}
        if eyelid_dirs is not None:
            shapes["eyelid_dirs"] = (eyelid_dirs, (V, 3, 2))
        for name, (arr, want) in shapes.items():
            got = np.asarray(arr).shape
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
                raise ValueError(f"FLAME {name}: expected shape {want}, got {got}")
        parents = [int(p) for p in np.asarray(parents).reshape(-1)]
        if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j):
            raise ValueError(f"FLAME kinematic tree: parents must be -1 for the root and precede each joint, got {parents}")
        self.parents = parents
        self.n_shape = int(np.asarray(shapedirs).shape[2])
        self.n_expr = int(np.asarray(exprdirs).shape[2])
        self.n_joints = J
        self.has_eyelids = eyelid_dirs is not None
        reg = f32(j_regressor)
        template = f32(v_template)
        dirs = torch.cat([f32(shapedirs), f32(exprdirs)] + ([f32(eyelid_dirs)] if self.has_eyelids else []), -1)
        self.register_buffer("v_template", template)                                      # (V, 3)
        self.register_buffer("blenddirs", dirs)                                           # (V, 3, S+E[+2])
        self.register_buffer("posedirs", f32(posedirs).permute(2, 0, 1).contiguous())      # (P, V, 3)
        self.register_buffer("lbs_weights", f32(lbs_weights))                              # (V, J)
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces, np.int64)))        # (F, 3)
        # the joint regressor is linear, so joints follow the blendshape coefficients directly
        self.register_buffer("j_template", reg @ template)                                # (J, 3)
        self.register_buffer("j_dirs", torch.einsum("jv,vcd->jcd", reg, dirs))            # (J, 3, S+E[+2])

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def _blend_parts(self, B: int, shape, expression, eyelids) -> list[tuple[slice, torch.Tensor]]:
        """[(columns of `blenddirs`, (B, n) coefficients)] for the coefficients given; components
        not given (or past the given count) are zero and cost nothing."""
        parts = []
        offsets = {"shape": 0, "expression": self.n_shape, "eyelids": self.n_shape + self.n_expr}
        limits = {"shape": self.n_shape, "expression": self.n_expr, "eyelids": 2}
        for name, x in (("shape", shape), ("expression", expression), ("eyelids", eyelids)):
            if x is None:
                continue
            if name == "eyelids" and not self.has_eyelids:
                raise ValueError("eyelids: this FLAME model has no eyelid blendshapes")
            _check(x, [None, None], name)
            if x.shape[0] not in (1, B) or x.shape[1] > limits[name] or (name == "eyelids" and x.shape[1] != 2):
                raise ValueError(f"{name}: expected ({B} or 1, ≤{limits[name]}) coefficients, got {tuple(x.shape)}")
            parts.append((slice(offsets[name], offsets[name] + x.shape[1]), x.expand(B, -1)))
        return parts

    def forward(self,
                shape: torch.Tensor | None = None,        # (B or 1, ≤S) identity coefficients β
                expression: torch.Tensor | None = None,   # (B or 1, ≤E) expression coefficients ψ
                global_pose: torch.Tensor | None = None,  # (B, 3) axis-angle of the root joint
                neck_pose: torch.Tensor | None = None,    # (B, 3)
                jaw_pose: torch.Tensor | None = None,     # (B, 3)
                eye_pose: torch.Tensor | None = None,     # (B, 6) left eye then right eye
                eyelids: torch.Tensor | None = None,      # (B, 2) when the model has eyelids
                vertex_ids: torch.Tensor | None = None,   # (K,) compute only these vertices
                batch_size: int | None = None,
                ) -> FlameOutput:
        poses = {"global_pose": global_pose, "neck_pose": neck_pose, "jaw_pose": jaw_pose}
        given = [x for x in (shape, expression, global_pose, neck_pose, jaw_pose, eye_pose, eyelids) if x is not None]
        B = batch_size or max([x.shape[0] for x in given], default=1)
        dev, dt = self.v_template.device, self.v_template.dtype
        rotvecs = []
        for name, x in poses.items():
            if x is not None:
                _check(x, [B, 3], name)
            rotvecs.append(x if x is not None else torch.zeros(B, 3, device=dev, dtype=dt))
        if eye_pose is not None:
            _check(eye_pose, [B, 6], "eye_pose")
        eyes = eye_pose if eye_pose is not None else torch.zeros(B, 6, device=dev, dtype=dt)
        rotvecs += [eyes[:, :3], eyes[:, 3:]]
        rot = rodrigues(torch.stack(rotvecs, 1))                                # (B, J, 3, 3)
        ids = slice(None) if vertex_ids is None else vertex_ids
        joints = self.j_template.expand(B, -1, -1)                              # (B, J, 3)
        v = self.v_template[ids].expand(B, -1, -1)                              # (B, K, 3)
        dirs = self.blenddirs[ids]                                              # (K, 3, S+E[+2])
        for cols, x in self._blend_parts(B, shape, expression, eyelids):
            joints = joints + torch.einsum("jcd,bd->bjc", self.j_dirs[:, :, cols], x)
            v = v + torch.einsum("kcd,bd->bkc", dirs[:, :, cols], x)
        eye = torch.eye(3, dtype=dt, device=dev)
        pose_feature = (rot[:, 1:] - eye).reshape(B, -1)                        # (B, 9 (J-1))
        v = v + torch.einsum("bp,pkc->bkc", pose_feature, self.posedirs[:, ids])
        verts, posed_joints = skin(v, joints, rot, self.parents, self.lbs_weights[ids])
        return FlameOutput(vertices=verts, joints=posed_joints)

    def embedding_vertices(self, face_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertices a landmark embedding touches: (ids (K,), local faces (L, 3) indexing ids)."""
        tri = self.faces[face_idx.long()]                                        # (L, 3)
        ids, local = torch.unique(tri, return_inverse=True)
        return ids, local

    def landmarks(self, face_idx: torch.Tensor, bary: torch.Tensor, **params) -> torch.Tensor:
        """(B, L, 3) landmarks for an embedding (face_idx (L,), bary (L, 3)), computing only the
        vertices the embedding uses. `params` are `forward`'s."""
        _check(bary, [face_idx.shape[0], 3], "bary")
        ids, local = self.embedding_vertices(face_idx)
        v = self.forward(vertex_ids=ids, **params).vertices                       # (B, K, 3)
        return (v[:, local] * bary[None, :, :, None]).sum(-2)
