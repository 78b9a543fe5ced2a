"""Data: where images come from (CIFAR-10, image folders), decoded once into uint8 tensors and cached."""
