"""Geometry operations: pure functions on Mesh and tensors.

Each returns a new object; those taking positions are differentiable in them
(they run inside the optimisation loop).

- normals:   face_normals, vertex_normals (angle-weighted), with_normals
- tangents:  vertex_tangents (MikkTSpace conventions, w handedness), with_tangents
- transform: transform (4x4), unit_size, center_by_reference (nvdiffmodeling's)
- subdivide: subdivide (midpoint, per attribute buffer)
- displace:  displace (along normals by a texture), sample_texture (bilinear wrap)
- skinning:  skin_positions, blend_matrices, skin_mesh, pose_views, load_nvdiffmodeling_skin
- laplacian: UniformLaplacian (precomputed), laplacian_loss
- uber:      merge_materials (several materials -> one atlas material)
- sampling:  sample_surface (area-weighted points, numpy)

Import from the submodules, e.g. `from difflod.geometry.normals import with_normals`.
"""
