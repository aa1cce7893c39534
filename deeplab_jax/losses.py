"""The training loss: softmax cross-entropy over labelled pixels, optionally weighted per class,
and optionally over the hardest pixels alone (TF DeepLab's top-k, mmsegmentation's OHEM), plus
optionally a soft Jaccard (IoU) loss, which weighs every class alike as mIoU does.

Every cross-entropy is a weighted mean: sum(w * ce) / sum(w) over the pixels it keeps, w the
pixel's class weight (1 without class weights), as PyTorch's `cross_entropy(weight=...)`
averages. Under `jax.jit` over a batch-sharded global array, the hard pixels are chosen, and the
soft Jaccard loss sums, over the global batch.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from deeplab_jax.config_error import ConfigError


def check_sizes(logits: jax.Array, labels: jax.Array) -> None:
  """Raises a ValueError unless `logits` [B, H, W, C] and `labels` [B, H, W] match in size."""
  if logits.shape[:3] != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} differ in size')


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_label: int,
                        class_weights: Sequence[float] | None) -> tuple[jax.Array, jax.Array]:
  """(cross-entropy, weight) of every pixel, flat and in float32; unlabelled pixels weigh 0.

  logits: [B, H, W, C] at the labels' resolution (DeepLab models upsample to their input size);
  labels: [B, H, W] class ids.
  """
  check_sizes(logits, labels)
  valid = labels != ignore_label
  safe_labels = jnp.where(valid, labels, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           safe_labels)
  weights = valid.astype(jnp.float32)
  if class_weights is not None:
    weights *= jnp.asarray(class_weights, jnp.float32)[safe_labels]
  return losses.reshape(-1), weights.reshape(-1)


def weighted_mean(losses: jax.Array, weights: jax.Array) -> jax.Array:
  """sum(weights * losses) / sum(weights); 0 where the weights sum to 0."""
  total = jnp.sum(weights)
  return jnp.sum(weights * losses) / jnp.where(total > 0, total, 1.0)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, ignore_label: int = 255,
                          class_weights: Sequence[float] | None = None) -> jax.Array:
  """Cross-entropy averaged over the labelled pixels, weighted by their class's weight."""
  return weighted_mean(*pixel_cross_entropy(logits, labels, ignore_label, class_weights))


def top_k_fraction(step: jax.Array, top_k_percent_pixels: float,
                   hard_example_mining_step: int) -> jax.Array:
  """TF DeepLab's ramp: the fraction of pixels kept falls linearly from 1 at step 0 to
  `top_k_percent_pixels` at `hard_example_mining_step` (at once if that is 0)."""
  if not hard_example_mining_step:
    return jnp.asarray(top_k_percent_pixels, jnp.float32)
  ramp = jnp.minimum(step / hard_example_mining_step, 1.0)
  return ramp * top_k_percent_pixels + (1.0 - ramp)


def top_k_cross_entropy(logits: jax.Array, labels: jax.Array, fraction: jax.Array,
                        ignore_label: int = 255,
                        class_weights: Sequence[float] | None = None) -> jax.Array:
  """TF DeepLab's hard-pixel mining: the weighted mean over the floor(fraction * labelled)
  labelled pixels (at least one) whose weighted loss is largest."""
  losses, weights = pixel_cross_entropy(logits, labels, ignore_label, class_weights)
  labelled = jnp.sum(weights > 0)
  keep = jnp.maximum(jnp.floor(fraction * labelled).astype(jnp.int32), 1)
  hardest_first = jnp.argsort(jnp.where(weights > 0, -weights * losses, jnp.inf))
  kept = jnp.arange(losses.size) < keep
  return weighted_mean(losses[hardest_first], weights[hardest_first] * kept)


def ohem_cross_entropy(logits: jax.Array, labels: jax.Array, threshold: float, min_kept: int,
                       ignore_label: int = 255,
                       class_weights: Sequence[float] | None = None) -> jax.Array:
  """mmsegmentation's OHEM: the weighted mean over the labelled pixels whose probability of
  their true class is below `threshold`, the threshold raised so that at least `min_kept`
  pixels per image are kept (the batch's min_kept * batch size least confident ones)."""
  losses, weights = pixel_cross_entropy(logits, labels, ignore_label, class_weights)
  labelled = labels.reshape(-1) != ignore_label
  true_class_probability = jnp.where(labelled, jnp.exp(-jax.lax.stop_gradient(losses)), jnp.inf)
  ascending = jnp.sort(true_class_probability)
  batch_kept = min_kept * labels.shape[0]
  index = jnp.clip(jnp.minimum(batch_kept, jnp.sum(labelled) - 1), 0, losses.size - 1)
  raised = jnp.maximum(jnp.where(jnp.any(labelled), ascending[index], 0.0), threshold)
  return weighted_mean(losses, weights * (true_class_probability < raised))


def soft_jaccard_loss(logits: jax.Array, labels: jax.Array, ignore_label: int = 255) -> jax.Array:
  """1 - soft IoU, averaged over the classes present in `labels`: per class, the sums over the
  labelled pixels of p * y over p + y - p * y, p the softmax probability and y the one-hot label
  (Rahman and Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks", 2016)."""
  check_sizes(logits, labels)
  num_classes = logits.shape[-1]
  valid = (labels != ignore_label)[..., None].astype(jnp.float32)
  probabilities = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * valid
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * valid
  intersection = jnp.sum(probabilities * one_hot, axis=(0, 1, 2))
  union = jnp.sum(probabilities + one_hot, axis=(0, 1, 2)) - intersection
  present = jnp.sum(one_hot, axis=(0, 1, 2)) > 0
  losses = 1.0 - intersection / jnp.where(present, union, 1.0)
  return jnp.sum(jnp.where(present, losses, 0.0)) / jnp.maximum(jnp.sum(present), 1)


def create_loss(config: ml_collections.ConfigDict,
                class_weights: Sequence[float] | None) -> Callable[..., jax.Array]:
  """loss(logits, labels, step) as `config` chooses: cross-entropy under OHEM (`ohem_threshold`
  set), top-k (`top_k_percent_pixels` < 1) or over every labelled pixel, plus
  `jaccard_loss_weight` times the soft Jaccard loss; `class_weights` resolved (or None)."""
  check_loss_config(config)
  ignore_label = config.ignore_label
  if config.ohem_threshold is not None:
    cross_entropy = lambda logits, labels, step: ohem_cross_entropy(
        logits, labels, config.ohem_threshold, config.ohem_min_kept, ignore_label, class_weights)
  elif config.top_k_percent_pixels < 1:
    cross_entropy = lambda logits, labels, step: top_k_cross_entropy(
        logits, labels,
        top_k_fraction(step, config.top_k_percent_pixels, config.hard_example_mining_step),
        ignore_label, class_weights)
  else:
    cross_entropy = lambda logits, labels, step: softmax_cross_entropy(
        logits, labels, ignore_label, class_weights)
  if not config.jaccard_loss_weight:
    return cross_entropy
  return lambda logits, labels, step: (
      cross_entropy(logits, labels, step)
      + config.jaccard_loss_weight * soft_jaccard_loss(logits, labels, ignore_label))


def check_loss_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError for loss settings that cannot work (together)."""
  if config.jaccard_loss_weight < 0:
    raise ConfigError('jaccard_loss_weight', config.jaccard_loss_weight, 'must be at least 0',
                      1.0)
  if not 0 < config.top_k_percent_pixels <= 1:
    raise ConfigError('top_k_percent_pixels', config.top_k_percent_pixels,
                      'is a fraction of the pixels, in (0, 1]', 0.2)
  if config.hard_example_mining_step < 0:
    raise ConfigError('hard_example_mining_step', config.hard_example_mining_step,
                      'must be at least 0', 0)
  if config.ohem_threshold is None:
    return
  if config.top_k_percent_pixels < 1:
    raise ConfigError('ohem_threshold', config.ohem_threshold,
                      f'OHEM and top-k mining (top_k_percent_pixels='
                      f'{config.top_k_percent_pixels}) exclude each other; set one', None)
  if not 0 < config.ohem_threshold <= 1:
    raise ConfigError('ohem_threshold', config.ohem_threshold,
                      'is a probability of the true class, in (0, 1]', 0.7)
  if config.ohem_min_kept < 0:
    raise ConfigError('ohem_min_kept', config.ohem_min_kept, 'must be at least 0', 100_000)
