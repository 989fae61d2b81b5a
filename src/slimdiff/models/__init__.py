"""Slim UNets, wavelet gates and named architecture presets."""
