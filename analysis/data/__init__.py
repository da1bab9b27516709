"""Stage 1, data: turn a data spec into (images, labels, sample ids) batches.

One module per source (Fashion-MNIST, image folders, synthetic planted classes) behind `open_data`;
`jpeg` decodes image folders on the GPU.
"""

from analysis.data.sources import DataSource, make_loader, open_data

__all__ = ["DataSource", "make_loader", "open_data"]
