"""CoNAL-Pro's conflict rule (Yue, PhD thesis 2023, §5.2.4; spec thesis.md §4): a preset of
``conal_conflict``."""
from mtl_platform.hookspecs import hookimpl

from .conal_conflict import ConalConflict


class ConalProConflict(ConalConflict):
    """CoNAL-Pro's conflict rule (Yue, PhD thesis 2023): = conal_conflict with notice=last (conflicts noticed
    on the last block only).

    A preset, registered under its own name so that ``conal_pro``'s search rounds and existing
    configs can name it: ``notice`` is fixed (not a parameter here), everything else is
    ``conal_conflict`` — see its docstring for the rule.
    """

    name = "conal_pro_conflict"
    params = ()
    notice = "last"


@hookimpl
def mtl_register(registry):
    registry.add_weighting(ConalProConflict)
