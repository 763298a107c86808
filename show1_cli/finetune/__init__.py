"""Motion customization of the keyframe UNet (`show1 finetune-motion`).

- `losses`: the epsilon MSE, the motion-distillation and the appearance-debiased losses, and `--loss`
  parsing (derivations and the measured choice of the default in docs/losses.md);
- `train`: the training loop, a pure function over tensors and models, with checkpoint/resume;
- `adapter`: the motion adapter file (only the trained parameters, with metadata), and applying it
  to a base UNet with a blend scale;
- `inversion`: DDIM inversion of the reference clip, to start generation from its noise.
"""
