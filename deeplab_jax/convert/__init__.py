"""Weight import from other frameworks: `python -m deeplab_jax.convert torchvision ...`."""
