"""ImageNet-1k's classes as timm lists them: WordNet ids in the order of the models' 1000 outputs, and short names.

    labels = imagenet_labels(["n01443537", "n02110958"])   # {"n01443537": 1, "n02110958": 254}
    wnids, names = imagenet_classes()                       # wnids[1] "n01443537", names[1] "goldfish"

An image folder whose class folders are all ImageNet-1k wnids is labelled with these indices, so
that a folder holding some of the classes still matches a model's outputs (image_folder.py).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

WNID = re.compile(r"n\d{8}")  # a WordNet noun id, the name of an ImageNet class folder


@cache
def imagenet_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, names) of the 1000 classes in output order, from timm's ImageNetInfo. A name is the
    wnid's first WordNet lemma ("goldfish, Carassius auratus" -> "goldfish"), followed by the wnid
    where two classes share that lemma ("crane (n02012849)", "crane (n03126707)"), so names are unique."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = tuple(info.label_names())
    lemmas = [info.label_name_to_description(w).split(", ")[0] for w in wnids]
    shared = {lemma for lemma, n in Counter(lemmas).items() if n > 1}
    return wnids, tuple(f"{lemma} ({w})" if lemma in shared else lemma for lemma, w in zip(lemmas, wnids))


def imagenet_labels(folders: list[str]) -> dict[str, int] | None:
    """Each folder name's ImageNet-1k output index when every one is an ImageNet-1k wnid, else None
    (timm's table is read only when all of them look like wnids)."""
    if not folders or not all(WNID.fullmatch(name) for name in folders):
        return None
    index = {wnid: k for k, wnid in enumerate(imagenet_classes()[0])}
    return {name: index[name] for name in folders} if all(name in index for name in folders) else None
