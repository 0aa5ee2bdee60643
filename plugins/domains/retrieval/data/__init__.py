"""The retrieval data families (sub-kind ``retrieval.data``): procedural CSS-like scenes (runnable
offline, SYNTHETIC) and the CSS dataset of the TIRG release."""


def register(registry) -> None:
    """Add every family to ``registry`` under ``retrieval.data`` (called by the domain's hook)."""
    from .css import CSS
    from .scenes import Scenes

    for family in (Scenes, CSS):
        registry.add("retrieval.data", family)
