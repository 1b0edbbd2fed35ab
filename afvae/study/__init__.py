"""A local human study for Table 2 (Fool Rate and TrueSkill): ``python -m afvae.study --help``.

Workflow: ``prepare`` exports a study set (real test images and each method's manipulations of the same
pairs, ``trials.json``), ``serve`` runs the page on localhost and appends every answer to ``answers.csv``,
``table`` turns the answers into Table 2. Modules: ``design`` (study folder, trials, order), ``stimuli``
(image export from trained models), ``answers`` (crash-safe CSV), ``server`` (HTTP + page), ``stats``
(intervals, TrueSkill), ``report`` (Table 2 files), ``browser`` (headless Chromium).
"""
