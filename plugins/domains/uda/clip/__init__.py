"""CLIP prompt learning, PGA's model (spec gradients.md §3.1): a frozen CLIP read from a local
folder (``frozen.py``), the shared and domain-specific prompt contexts (``prompt.py``), zero-shot
pseudo-labels (``zero_shot.py``) and the ``backbone: clip`` factories for the ``uda`` domain
(``backbone.py``). Needs the optional ``transformers`` package (``pip install 'mtl-platform[clip]'``),
imported only when CLIP weights are read."""
