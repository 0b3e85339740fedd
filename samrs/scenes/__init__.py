"""Generated overhead scenes with exact instance masks, deterministic by seed.

`generate_scene` draws one scene; `samrs.scenes.formats` writes scenes in each detection format as
the real datasets lay them out, and `write_subset` writes them directly as a SAMRS-format subset.
"""

from samrs.scenes.generate import Scene, SceneObject, generate_scene, generate_scenes

__all__ = ["Scene", "SceneObject", "generate_scene", "generate_scenes"]
