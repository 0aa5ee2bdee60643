"""Unsupervised domain adaptation: a labelled source and an unlabelled target stream, with the
alignment and source-classification losses as the two tasks a weighting harmonises (GH, GH++)."""
