"""What `deeplab_jax.crf` is checked against: Krähenbühl's C++ densecrf (`pydensecrf2`, a test
extra, imported only when called) and unaries shaped like a network's."""

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import crf


def blob_probabilities(rng: np.random.Generator, height: int, width: int, num_classes: int,
                       stride: int = 8) -> np.ndarray:
  """[H, W, C] softmax of random logits at 1/`stride` resolution, upsampled: a network's blobs."""
  logits = 3 * rng.normal(size=(height // stride + 1, width // stride + 1, num_classes))
  logits = jax.image.resize(jnp.asarray(logits, jnp.float32), (height, width, num_classes),
                            'linear')
  return np.asarray(jax.nn.softmax(logits, -1))


def densecrf(probabilities: np.ndarray, image: np.ndarray,
             params: crf.CRFParams) -> np.ndarray:
  """pydensecrf's mean field with `params`, its kernels divided by their per-pixel sums
  (NORMALIZE_AFTER), as `crf.dense_crf` does."""
  import pydensecrf.densecrf as dcrf  # pylint: disable=g-import-not-at-top
  height, width, num_classes = probabilities.shape
  model = dcrf.DenseCRF2D(width, height, num_classes)
  model.setUnaryEnergy(np.ascontiguousarray(
      -np.log(np.maximum(probabilities, 1e-10)).reshape(-1, num_classes).T))
  model.addPairwiseGaussian(sxy=params.smoothness_std, compat=params.smoothness_weight,
                            normalization=dcrf.NORMALIZE_AFTER)
  model.addPairwiseBilateral(sxy=params.bilateral_spatial_std, srgb=params.bilateral_colour_std,
                             rgbim=np.ascontiguousarray(image), compat=params.bilateral_weight,
                             normalization=dcrf.NORMALIZE_AFTER)
  q = np.array(model.inference(params.iterations), np.float32)
  return q.T.reshape(height, width, num_classes)
