"""A reproducible study of neural-network weight initializers."""
