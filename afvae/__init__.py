"""afvae: a reproducible companion to AF-VAE ("Make a Face", ICCV 2019)."""
__version__ = "0.1.0"
