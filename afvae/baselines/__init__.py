"""The GAN baselines of the paper's Table 1, re-implemented from their papers' descriptions, one file each.

* ``pix2pixhd``: boundary map -> image (Wang et al., CVPR 2018)
* ``stargan``: image + target domain label -> image (Choi et al., CVPR 2018)
* ``ganimation``: image + continuous target condition -> colour and attention masks (Pumarola et al., ECCV 2018)
* ``common``: their shared interface (``GANBaseline``, ``translate``), layers and adversarial losses
* ``train``: configs, the training loop (the project's conventions), caching and loading

Every method, AF-VAE included, answers ``model.translate(x, c_source, c_target) -> x_out``, so the evaluation
(``afvae.evaluate``) scores all of them the same way.
"""
