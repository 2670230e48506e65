"""layerscope engine: datasets, models, training and run folders.

Kept light on purpose: importing ``engine`` loads no dataset, no model and no
optional heavy library; each submodule imports what it needs.
"""

__version__ = "0.1.0"
