"""The metrics of a trained VAE (reference_stats, the score stages, evaluate): the feature networks,
the 2015 Inception graph and its weights, streamed statistics, FID and KID, precision and recall,
the reconstructions' FID, the test ELBO's bookkeeping and active units, and joining them."""
