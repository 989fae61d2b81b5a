"""Metrics: complexity, and (with the evaluation modules) FID/KID, SWD and spectra."""
