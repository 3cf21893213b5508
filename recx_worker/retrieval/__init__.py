"""Embeddings, the FAISS index and the evidence API."""
