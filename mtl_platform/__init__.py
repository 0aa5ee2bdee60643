"""mtl-platform: multi-task learning composed from plugins (DESIGN.md §1).

Importing the package is cheap: torch-heavy modules are imported where used, and
mujoco, metaworld and matplotlib only by the components that need them.
"""

__version__ = "0.1.0"
