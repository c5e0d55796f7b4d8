"""The model: architectures, the Keras VAE and its losses, the saved model folder, the ex-post latent density."""
