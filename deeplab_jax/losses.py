"""The training loss: softmax cross-entropy over pixels that are not ignored."""

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                          ignore_label: int = 255) -> jax.Array:
  """Mean cross-entropy over pixels whose label is not `ignore_label`, in float32.

  logits: [B, H, W, C] at the labels' resolution (DeepLab models upsample to their input size);
  labels: [B, H, W] class ids. A batch with no labelled pixel has loss 0.
  """
  if logits.shape[:3] != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} differ in size')
  valid = labels != ignore_label
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.where(valid, labels, 0))
  return jnp.sum(losses * valid) / jnp.maximum(jnp.sum(valid), 1)
