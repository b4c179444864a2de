"""lcmd plugin for images: a VQ-VAE codec and image data sets (embedded MNIST subset)."""
