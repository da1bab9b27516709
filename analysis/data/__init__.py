"""Stage 1, data: turn a data spec into (images, labels, sample ids) batches.

One module per source (`fashion_mnist`, `image_folder`, `synthetic`) behind `open_data` in `sources`;
`source` holds what they all return and its loader; `jpeg` decodes image folders on the GPU.
"""

from analysis.data.fashion_mnist import read_idx
from analysis.data.image_folder import load_image
from analysis.data.source import DataSource, make_loader
from analysis.data.sources import SPEC_FORMS, open_data

__all__ = ["SPEC_FORMS", "DataSource", "load_image", "make_loader", "open_data", "read_idx"]
