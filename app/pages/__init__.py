"""The six wizard steps, one module each: Project, Images, Pretrain, Label, Fit, Export."""
