"""Model mapping (paper 002): meta-models that read a transformer *trained by gradient descent* (a zoo model) and
write the program it was trained on, in RASP or Python."""
