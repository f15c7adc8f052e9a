"""Training: one loop (``trainer.py``) running the teacher fine-tune, the distillation and the plain
student as stages; ``release.py`` turns a recipe into a release folder. Kept free of torch imports
so that the CLI can read the defaults below."""

# The distillation defaults of every stage and command. T = 1: the teacher is trained with label
# smoothing, its logits are flat (standard deviation 1.9 over 1025 classes), and at T = 2 its
# distribution is nearly uniform, so the KL term carries almost no signal (docs/training.md).
KD_TEMPERATURE = 1.0
KD_ALPHA = 0.7  # weight of the distillation term; 1 - alpha on the labels
