"""What every stage shares, small and stable: errors, atomic writes, the stage command line, the prepared-data format, params loading."""
