"""Spatial samples on cortical meshes and grayordinates (issue 12, the data layer).

:mod:`bids_hrf.surface.graph`: the neighbourhood graph of any set of spatial samples
(mesh vertices from the triangles; voxels by 6-connectivity), the one structure the
spatial priors (JDE-VEM's Ising field) and mesh clustering need, whatever the space.
File reading lives in :mod:`bids_hrf.io.surface`.
"""
