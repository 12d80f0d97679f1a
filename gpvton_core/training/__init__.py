"""Training pieces (pure PyTorch): VGG-19 features, warp / generator losses, DGT, discriminator,
the training batch builder, the test-time warp of training pairs and the generator stage's forward.
The Ray Train loop lives in ``workers/train/``."""
