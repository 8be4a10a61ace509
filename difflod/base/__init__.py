"""The base-mesh stage: from a detailed reference to a light, UV-mapped, textured mesh.

- decimate: weld, decimate (QEM, fast-simplification)
- remesh:   remesh (an even remesh of a closed surface, gpytoolbox), and
            even_geometry: the remesh where it keeps the shape about as
            well as QEM (simplify then trains from it)
- baseline: baseline, which runs the decimation (or takes the remesh), the
            atlas and the bake in order: `difflod baseline`, and the start
            of `difflod simplify`
- atlas:    uv_atlas (xatlas charts packed for a square texture, made in a
            child process: xatlas's destructor can hang)
- bake:     bake_textures (closest-point transfer of kd, ks and a normal map)
- render_tangents: match_render_tangents (the renderer's normals and
            tangents, the baked normal map matched to them; for simplify)

Import from the submodules, e.g. `from difflod.base.baseline import baseline`.
"""
