"""The scene: cameras, the point light, batches of views and their backgrounds.

Below the renderer and the shading; training, evaluation and the report draw
their views here (views.py). Import from the submodules.
"""
