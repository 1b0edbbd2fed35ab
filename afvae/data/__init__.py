"""Face data: the embedded procedural faces (``afvae.data.synthetic``) and the datasets training reads
(``afvae.data.datasets``: SyntheticFaces, FolderFaces, build_dataset, collate, export_synthetic).

Kept import-free so that ``python -m afvae.data.synthetic`` runs its CLI without a double import.
"""
