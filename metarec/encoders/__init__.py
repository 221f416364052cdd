"""Feature embeddings and the rating network."""
