"""Deriving steering vectors from a model's hidden states (no training): shift vectors and contrastive vectors
(`shift.py`), in-context vectors (`icv.py`); `states.py` reads the states, `folder.py` writes the vectors in the
folder format the `shift`, `contrast` and `icv` method families load (see `methods/_steer.py`)."""
