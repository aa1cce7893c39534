"""Starting from pretrained weights: restore what matches, initialise the rest, and say which."""

import dataclasses

from absl import logging
from flax import traverse_util
import jax
import numpy as np

from deeplab_jax import checkpointing
from deeplab_jax import sharding

# Layers whose shape follows the number of classes: a fine-tuning run re-initialises them
# (LR-ASPP has two classifiers).
CLASSIFIER_LAYERS = ('classifier', 'low_classifier', 'logits')


@dataclasses.dataclass
class Report:
  """Paths ('params/backbone/stem_conv/conv/kernel', ...) by what became of them."""
  restored: list[str]
  fresh_classifier: list[str]  # Shape differs from the checkpoint's: another class count.
  left_at_init: list[str]  # Absent from the checkpoint.
  unused: list[str]  # In the checkpoint, not in the model.


def merge(initial: dict, pretrained: dict) -> tuple[dict, Report]:
  """`initial` variables with every array that `pretrained` has at the same path and shape.

  A classifier whose shape differs keeps its initial value; any other shape mismatch is an
  error naming the path and both shapes.
  """
  flat_initial = traverse_util.flatten_dict(initial, sep='/')
  flat_pretrained = traverse_util.flatten_dict(pretrained, sep='/')
  merged, report = {}, Report([], [], [], [])
  for path, value in flat_initial.items():
    merged[path] = value
    if path not in flat_pretrained:
      report.left_at_init.append(path)
      continue
    loaded = flat_pretrained[path]
    if loaded.shape != value.shape:
      if path.split('/')[-2] not in CLASSIFIER_LAYERS:
        raise ValueError(f'{path}: the checkpoint has shape {loaded.shape}, the model '
                         f'{value.shape}')
      report.fresh_classifier.append(path)
      continue
    merged[path] = np.asarray(loaded, value.dtype)
    report.restored.append(path)
  report.unused = sorted(set(flat_pretrained) - set(flat_initial))
  return traverse_util.unflatten_dict(merged, sep='/'), report


def layers(paths: list[str]) -> str:
  """'aspp/conv1x1/bn, classifier, ...': the layers the array paths belong to."""
  return ', '.join(sorted({path.split('/', 1)[1].rsplit('/', 1)[0] for path in paths}))


def initialize_from(state, directory: str, mesh: jax.sharding.Mesh):
  """(`state` with params and BatchNorm statistics restored from `directory`, the report)."""
  merged, report = merge(jax.device_get(state.variables), checkpointing.load_variables(directory))
  logging.info('Initialised from %s: %d of %d arrays restored.', directory,
               len(report.restored), len(report.restored) + len(report.fresh_classifier) +
               len(report.left_at_init))
  if report.fresh_classifier:
    logging.warning('Classifier initialised afresh (the checkpoint has another number of '
                    'classes): %s', layers(report.fresh_classifier))
  if report.left_at_init:
    logging.warning('Not in the checkpoint, left at their initialisation: %s',
                    layers(report.left_at_init))
  if report.unused:
    logging.info('In the checkpoint but not in this model, unused: %s', layers(report.unused))
  merged = jax.device_put(merged, sharding.replicated(mesh))
  return state.replace(params=merged['params'], batch_stats=merged.get('batch_stats', {})), report
