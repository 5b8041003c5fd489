"""Normalizing flows (Glow and RealNVP) in plain PyTorch for making synthetic mammograms.

Takes integer image arrays, configs and paths and returns arrays, paths and metrics; it
never touches the catalog. Import from the modules: ``glow.config`` (FlowConfig, PRESETS,
build_model), ``glow.train`` (train, load_checkpoint), ``glow.operations`` (sample,
interpolate, ball, direction, manipulate), ``glow.latent`` (save_latent, load_latent) and
``glow.likelihood`` (bits_per_dim).
"""
