"""Feature circuits across residual-stream SAE layers (Marks et al., Sparse Feature Circuits)."""
