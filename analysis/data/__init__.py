"""Stage 1, data: turn a data spec into (images, labels, sample ids) batches.

`source` holds what every source returns, the registry of the kinds of spec (`register_source`),
`open_data` and the loader; one module per kind of source (`fashion_mnist`, `image_folder`,
`synthetic`), each registering itself when imported here; `jpeg` decodes image folders on the GPU.
"""

from analysis.data import fashion_mnist, image_folder, synthetic  # noqa: F401  (each registers its kind)
from analysis.data.fashion_mnist import read_idx
from analysis.data.image_folder import load_image
from analysis.data.source import SOURCES, DataSource, make_loader, open_data, register_source, spec_forms

__all__ = ["SOURCES", "DataSource", "load_image", "make_loader", "open_data", "read_idx", "register_source",
           "spec_forms"]
