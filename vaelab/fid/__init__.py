"""FID and its kin (reference_stats, evaluate): the feature networks, the 2015 Inception graph and its weights, streamed statistics, distances, precision/recall, the evaluation."""
