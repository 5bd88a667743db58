"""Lower bounds of a ReLU network's outputs over input boxes: interval, CROWN, LP."""
