"""The plot stage's figures: which ones, how they are drawn and laid out, the latent-space maths."""
