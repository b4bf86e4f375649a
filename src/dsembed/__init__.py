"""dsembed: Distilled Sentence Embedding (Barkan et al., AAAI 2020)."""

__version__ = "0.1.0"
