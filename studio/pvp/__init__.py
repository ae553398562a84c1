"""Shared pieces of the PVP (StyleGAN) engine's stages: data loading, losses, latent helpers."""
