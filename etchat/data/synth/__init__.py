"""The synthetic demo data set: videos with real visual events, and annotations in the real formats."""
