"""The valence axis: the direction of a layer's residual stream along which the emotion
vectors spread most (their PC1), signed to point from unpleasant to pleasant emotions.

Steering reads generations along it; the circuit's direction view patches along it.
"""

from __future__ import annotations

import numpy as np

from saefeatures import stats
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store
from saefeatures.store.read import vectors_at


def valence_axis(store: Store, model: str, corpus: str, method: str, layer: int) -> np.ndarray:
    """PC1 of the stored vectors of every rated emotion at the layer, a unit vector signed
    so that the emotions' scores on it grow with their rated valence."""
    vector_set = vectors_at(store, model, corpus, method, None, [layer])
    ratings = catalog.load_ratings()
    rated = [e for e in vector_set.emotions if e in ratings.valence]
    if len(rated) < 3:
        raise SaefeaturesError("the valence axis needs vectors of at least 3 rated emotions")
    matrix = vector_set.vectors[[vector_set.emotions.index(e) for e in rated], 0]
    fitted = stats.pca(matrix, 1)
    _, sign = stats.orient(fitted.scores[:, 0], np.array([ratings.valence[e] for e in rated]))
    return sign * fitted.components[0]
