"""The steps behind embed-images and embed-texts: items in, embeddings rows out."""
