"""Training (the train stage): the loop, resumable backups, the compute policy."""
