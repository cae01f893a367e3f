"""navbuild's Hydra launcher on Ray (``hydra/launcher=navbuild_ray``): one Ray task per sweep point.

Shipped in navbuild's wheel as a portion of Hydra's ``hydra_plugins`` namespace package, where
Hydra discovers launchers. It stands in for hydra-ray-launcher 1.2.2, whose wheel pins
cloudpickle<3 and boto3, and which stops waiting at the first point whose worker died, so the
points still running are killed with the sweep's Ray. Ray is imported only when a sweep launches.
"""
