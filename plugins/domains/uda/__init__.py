"""Unsupervised domain adaptation: a labelled source and an unlabelled target stream, with the
alignment and source-classification losses as the two tasks a weighting harmonises (GH, GH++)."""
from mtl_platform.hookspecs import hookimpl


@hookimpl
def mtl_register(registry):
    from .data.digits import Digits
    from .data.office import DomainNet, Office31, OfficeHome, VisDA2017
    from .domain import UDA
    from .methods.cdan import CDAN
    from .methods.dann import DANN
    from .methods.dwl import DWL
    from .methods.gvb import GVB
    from .methods.mcd import MCD
    from .methods.mdd import MDD
    from .methods.pseudo_label import PseudoLabel
    from .methods.source_only import SourceOnly
    from .methods.ssrt import SSRT

    registry.add_domain(UDA)
    for family in (Digits, Office31, OfficeHome, VisDA2017, DomainNet):
        registry.add("uda.data", family)
    for method in (DANN, CDAN, MCD, MDD, DWL, GVB, SSRT, SourceOnly):
        registry.add("uda.method", method)
    registry.add("uda.method", PseudoLabel)
