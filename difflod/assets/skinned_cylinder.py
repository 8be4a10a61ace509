"""The "skinned_cylinder" asset: a capped cylinder along +Y with 4 joints.

Joints sit at even heights in a chain (root at the bottom). Weights are
normalized Gaussians of the height around each bone's middle, so they blend
smoothly and sum to 1. The animation (1.5 s, 31 keys) swings the three upper
joints about Z (and a little about X, seeded) one way and back: the first key
is the rest pose, whose skinning matrices are exactly the identity.
"""

from __future__ import annotations

import math

import numpy as np

from difflod.assets import _tex
from difflod.assets._build import lathe, lathe_size, to_i, to_t
from difflod.mesh import Material, Mesh, Skin

RADIUS = 0.3
HALF = 0.95
JOINTS = 4
KEYS = 31
DURATION = 1.5


def _rotation(angle_z: np.ndarray, angle_x: np.ndarray) -> np.ndarray:
    """`[N,4,4]` float64 Rz(angle_z) @ Rx(angle_x)."""
    n = angle_z.shape[0]
    cz, sz, cx, sx = np.cos(angle_z), np.sin(angle_z), np.cos(angle_x), np.sin(angle_x)
    rz = np.zeros((n, 4, 4))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = cz, -sz, sz, cz
    rz[:, 2, 2] = rz[:, 3, 3] = 1.0
    rx = np.zeros((n, 4, 4))
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = cx, -sx, sx, cx
    rx[:, 0, 0] = rx[:, 3, 3] = 1.0
    return rz @ rx


def _translation(y: float) -> np.ndarray:
    m = np.eye(4)
    m[1, 3] = y
    return m


def skin_animation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times `[N]`, skinning matrices `[N,J,4,4]`, joint heights `[J]`), float64."""
    heights = -HALF + np.arange(JOINTS) * (2.0 * HALF / JOINTS)
    times = np.linspace(0.0, DURATION, KEYS)
    swing = np.sin(2.0 * math.pi * times / DURATION)
    amp_z = rng.uniform(0.25, 0.45, JOINTS) * np.sign(rng.uniform(-1.0, 1.0))
    amp_x = rng.uniform(-0.2, 0.2, JOINTS)
    world = np.empty((KEYS, JOINTS, 4, 4))
    world[:, 0] = _translation(heights[0])
    for j in range(1, JOINTS):                      # loop over the joint chain
        local = _translation(heights[j] - heights[j - 1]) @ _rotation(amp_z[j] * swing,
                                                                      amp_x[j] * swing)
        world[:, j] = world[:, j - 1] @ local
    # The rest pose (key 0) has identity rotations, so its inverse is the
    # negated translation and world @ inverse_bind is exactly the identity there.
    inverse_bind = np.broadcast_to(np.eye(4), (JOINTS, 4, 4)).copy()
    inverse_bind[:, :3, 3] = -world[0, :, :3, 3]
    return times, world @ inverse_bind, heights


def joint_weights(y: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """`[V,J]` float64 weights: Gaussians around bone middles, normalized."""
    bone_len = 2.0 * HALF / JOINTS
    middle = heights + 0.5 * bone_len
    w = np.exp(-(((y[:, None] - middle[None, :]) / (0.6 * bone_len)) ** 2))
    return w / w.sum(axis=1, keepdims=True)


def cylinder_material(rng: np.random.Generator, res: int) -> Material:
    """Rings along the height and noise, so the bend is easy to see."""
    v = ((np.arange(res) + 0.5) / res)[:, None]
    noise = _tex.value_noise(rng, res, res, 8, 8, octaves=4)
    rings = (np.floor(v * 16.0) % 2.0) * np.ones((1, res))
    rgb = np.stack([0.25 + 0.6 * rings, 0.3 + 0.3 * noise, 0.8 - 0.5 * rings], -1)
    ks = np.stack([np.zeros_like(noise), 0.3 + 0.5 * noise, 0.2 * rings], -1)
    return Material(name="cylinder", kd=_tex.to_tex(_tex.srgb_to_linear(rgb)),
                    ks=_tex.to_tex(ks))


def build(triangles: int, seed: int, texture_res: int) -> Mesh:
    """The "skinned_cylinder" asset (see the module docstring)."""
    rng = np.random.default_rng([seed, 5])
    intervals, around = lathe_size(triangles, aspect=2.0 * math.pi * RADIUS / (2.0 * HALF))
    side = max(1, intervals - 2)
    y = np.concatenate([[-HALF], np.linspace(-HALF, HALF, side + 1), [HALF]])
    r = np.concatenate([[0.0], np.full(side + 1, RADIUS), [0.0]])
    g = lathe(r, y, around)
    times, matrices, heights = skin_animation(rng)
    weights = joint_weights(g["pos"][:, 1], heights)
    joints = np.broadcast_to(np.arange(JOINTS), weights.shape)
    skin = Skin(times=to_t(times), matrices=to_t(matrices),
                joint_names=tuple(f"joint{j}" for j in range(JOINTS)))
    return Mesh(v_pos=to_t(g["pos"]), t_pos_idx=to_i(g["tri"]), v_tex=to_t(g["uv"]),
                t_tex_idx=to_i(g["tri_uv"]), materials=(cylinder_material(rng, texture_res),),
                v_joints=to_i(joints), v_weights=to_t(weights), skin=skin)
