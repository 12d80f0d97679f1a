"""Training pieces (pure PyTorch): VGG-19 features, warp / generator losses, DGT, discriminator,
and the training batch builder. The Ray Train loop lives in ``workers/train_loop.py``."""
