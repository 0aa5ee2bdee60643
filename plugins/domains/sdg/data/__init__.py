"""The SDG data families (sub-kind ``sdg.data``): the digits benchmark on packaged real data and
the DomainBed image-folder benchmarks (PACS, VLCS, OfficeHome, TerraIncognita, DomainNet)."""


def register(registry) -> None:
    """Add every family to ``registry`` under ``sdg.data`` (called by the sdg domain's hook)."""
    from .digits import SDGDigits
    from .domainbed import PACS, VLCS, DomainNet, OfficeHome, TerraIncognita

    for family in (SDGDigits, PACS, VLCS, OfficeHome, TerraIncognita, DomainNet):
        registry.add("sdg.data", family)
