"""The built-in plugins of mtl-platform, installed as ``mtl_platform_plugins``.

They are registered through the ``mtl_platform`` entry-point group exactly like a
third-party plugin: one entry point per kind, each kind's package finds its own files.
"""
