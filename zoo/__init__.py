"""tfvae's pretrained presets, installed as the package `tfvae.presets`.

One folder per preset; see `tfvae.zoo`.
"""
