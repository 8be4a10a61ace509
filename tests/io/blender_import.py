"""Run inside Blender (blender -b --python THIS -- MODEL.glb): import with Blender's own
glTF importer and print what it made, one JSON line prefixed RESULT."""

import json
import sys

import bpy
import numpy

if not hasattr(numpy, "bool"):  # Blender 3.4's importer uses numpy.bool, gone since numpy 1.24
    numpy.bool = bool

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[sys.argv.index("--") + 1])
meshes = {}
for ob in bpy.data.objects:
    if ob.type == "MESH":
        me = ob.data
        meshes[ob.name] = {"polys": len(me.polygons), "custom_normals": me.has_custom_normals,
                           "uv_layers": len(me.uv_layers),
                           "materials": [m.name for m in me.materials]}
materials = {}
for m in bpy.data.materials:
    if m.use_nodes:
        links = [[lk.from_node.type, lk.from_socket.name, lk.to_node.type, lk.to_socket.name]
                 for lk in m.node_tree.links]
        spaces = {n.image.name: n.image.colorspace_settings.name for n in m.node_tree.nodes
                  if n.type == "TEX_IMAGE" and n.image}
        materials[m.name] = {"links": links, "colorspaces": spaces, "blend": m.blend_method,
                             "alpha_threshold": round(m.alpha_threshold, 4),
                             "backface_culling": m.use_backface_culling}
print("RESULT" + json.dumps({"meshes": meshes, "materials": materials}))
