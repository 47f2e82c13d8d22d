"""Random 3D augmentation of training patches.

An image patch (C, Z, Y, X), its targets (K, Z, Y, X) and its voxel weights (K, Z, Y, X) are
transformed together: spatial transforms (flips, quarter turns, elastic deformation) use the
same parameters for all three, with linear interpolation for the image and nearest-neighbour
for targets and weights (so binary targets stay binary); intensity transforms (blur, photon
level, noise, contrast, gamma, channel scaling, membrane dimming, intensity drift,
single-channel copies) change the image only.

Real stacks are photon-limited with nearly white noise (``real-stack-statistics.md``), so
the transforms that change blur and photon level follow the imaging physics rather than
filtering the noisy patch: a blur acts on the signal and the noise is topped up to stay
white with its former variance, and fewer photons add noise whose variance grows with the
intensity (shot noise), estimated from the patch's own noise. Values clipped at the
camera's zero stay at the channel's minimum. The defaults are deliberately strong: real
stacks differ from each other in photon level, membrane contrast, blur and intensity drift,
and the network has to cope with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from segmentation.errors import InputError

FloatRange = tuple[float, float]


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities and parameter ranges of each augmentation.

    Every ``p_*`` is the probability that the transform is applied to a patch; ranges are
    ``(low, high)`` bounds of a uniform draw. Intensities refer to images normalised to
    roughly [0, 1] per channel (``segmentation.io.normalize_percentile``).

    Attributes
    ----------
    p_flip : float
        Probability of flipping each of the Z, Y and X axes (drawn per axis).
    p_rot90 : float
        Probability of an in-plane (Y, X) rotation by a multiple of 90 degrees. For square
        patches k is drawn from {1, 2, 3}; for non-square patches only k = 2 (a half turn)
        keeps the shape, so only that is used.
    p_elastic : float
        Probability of an elastic deformation.
    elastic_sigma : float
        Standard deviation (in XY pixels) of the Y and X displacements at the control points.
    elastic_sigma_z : float
        Standard deviation (in slices) of the Z displacements at the control points.
    elastic_points : int
        Number of control points along Y and X (the Z axis uses ``elastic_points_z``);
        the displacement field is a cubic-spline upsampling of the control-point grid.
    elastic_points_z : int
        Number of control points along Z.
    p_blur : float
        Probability of a Gaussian blur of the signal; sigmas are drawn per channel and per
        axis (the channels are never mixed). The white noise that the blur removes is added
        back (shot-noise shaped), so the patch is as noisy and as white as before, only
        its structures are blurred, as in a microscope with a wider point-spread function.
    blur_sigma_xy_range, blur_sigma_z_range : (float, float)
        Ranges of the blur sigma in Y/X (pixels) and in Z (slices).
    p_photons : float
        Probability of imaging with fewer photons: shot noise is added so that the noise
        variance per unit intensity grows by ``1 / fraction`` (drawn per channel), the
        patch's own noise being estimated from neighbouring pixels.
    photon_fraction_range : (float, float)
        Range of the fraction of the photons kept.
    p_gauss_noise : float
        Probability of additive Gaussian (read) noise.
    noise_std_range : (float, float)
        Range of the noise standard deviation (drawn per channel).
    p_contrast : float
        Probability of a contrast/brightness change (drawn per channel).
    contrast_range, brightness_range : (float, float)
        Contrast factor around the channel mean, and additive brightness offset.
    p_gamma : float
        Probability of a gamma change (drawn per channel; applied on the channel's range).
    gamma_range : (float, float)
        Range of the gamma exponent.
    p_channel_scale : float
        Probability of scaling each channel's intensity independently.
    channel_scale_range : (float, float)
        Range of the per-channel factor.
    p_face_contrast : float
        Probability of changing how bright the faces between cells are, per channel: the
        boundary target (``targets[0]``), slightly blurred, times the channel's median
        level in the cells (``targets[1]``, the foreground, where given: then only faces
        at least 3 px from the background change) and a gain from ``face_contrast_range``
        is added (shot noise included for added light), as a stronger or weaker membrane
        stain would. Real
        stacks' faces stand 0.5-0.7 interior standard deviations above the interior; this
        lets training see from about half to twice that.
    face_contrast_range : (float, float)
        Range of the gain (negative dims the faces).
    p_dim_membrane : float
        Probability of dimming the membrane channel: the signal above the local
        (smoothed) level is multiplied by a factor from ``dim_membrane_range``, then the
        channel is mapped back to its former 1st–99.8th percentile range, as a percentile
        normalisation of a stack with faint membranes would.
    dim_membrane_range : (float, float)
        Range of the factor applied to the membrane contrast.
    membrane_channel : int
        Index of the membrane channel (skipped when the image has fewer channels).
    p_drift : float
        Probability of a smooth multiplicative intensity drift: a linear ramp across Y/X and
        an exponential fall-off with depth (Z).
    drift_range : (float, float)
        Range of the smallest multiplicative factor of the drift.
    p_single_channel : float
        Probability of copying one channel, drawn at random, into every channel after all
        other intensity transforms, so that the inputs are identical, as
        :func:`segmentation.io.read_stack` makes them for a single-channel stack. The
        network then learns to segment from either channel alone.
    """

    p_flip: float = 0.5
    p_rot90: float = 0.5
    p_elastic: float = 0.5
    elastic_sigma: float = 6.0
    elastic_sigma_z: float = 0.5
    elastic_points: int = 4
    elastic_points_z: int = 3
    p_blur: float = 0.3
    blur_sigma_xy_range: FloatRange = (0.3, 1.5)
    blur_sigma_z_range: FloatRange = (0.0, 1.0)
    p_photons: float = 0.4
    photon_fraction_range: FloatRange = (0.35, 1.0)
    p_gauss_noise: float = 0.2
    noise_std_range: FloatRange = (0.0, 0.04)
    p_contrast: float = 0.5
    contrast_range: FloatRange = (0.6, 1.4)
    brightness_range: FloatRange = (-0.15, 0.15)
    p_gamma: float = 0.3
    gamma_range: FloatRange = (0.7, 1.5)
    p_channel_scale: float = 0.5
    channel_scale_range: FloatRange = (0.7, 1.3)
    p_face_contrast: float = 0.7
    face_contrast_range: FloatRange = (-0.1, 1.0)
    p_dim_membrane: float = 0.3
    dim_membrane_range: FloatRange = (0.3, 1.0)
    membrane_channel: int = 1
    p_drift: float = 0.3
    drift_range: FloatRange = (0.5, 1.0)
    p_single_channel: float = 0.0

    @classmethod
    def spatial_only(cls) -> AugmentationConfig:
        """A configuration with all intensity transforms switched off."""
        return cls(
            p_blur=0.0,
            p_gauss_noise=0.0,
            p_photons=0.0,
            p_face_contrast=0.0,
            p_contrast=0.0,
            p_gamma=0.0,
            p_channel_scale=0.0,
            p_dim_membrane=0.0,
            p_drift=0.0,
            p_single_channel=0.0,
        )

    @classmethod
    def none(cls) -> AugmentationConfig:
        """A configuration that leaves every patch unchanged."""
        return replace(cls.spatial_only(), p_flip=0.0, p_rot90=0.0, p_elastic=0.0)


def augment(
    image: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
    config: AugmentationConfig = AugmentationConfig(),  # noqa: B008 (frozen dataclass)
    *,
    z_flipped: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomly augment an image patch together with its targets and weights.

    Targets that are not symmetric in Z (the "anisotropic" boundaries mark only the lower
    plane of a face between planes) must not simply be flipped along Z: the flipped target
    would mark the upper plane, and a network trained on both versions learns to mark
    neither clearly. Pass ``z_flipped``, the targets and weights computed from the Z-flipped
    labels and flipped back, and a Z flip uses them instead.

    Parameters
    ----------
    image : (C, Z, Y, X) float array
        Normalised image patch.
    targets : (K, Z, Y, X) array
        Targets (e.g. from :func:`segmentation.training.targets.make_targets`).
    weights : (K, Z, Y, X) array
        Voxel weights of the targets.
    rng : numpy.random.Generator
        Source of randomness; the result is a deterministic function of its state.
    config : AugmentationConfig
        Probabilities and ranges.
    z_flipped : (targets, weights), optional
        Targets and weights (shapes as above) to use in place of ``targets`` and ``weights``
        when the Z axis is flipped; ``None`` flips ``targets`` and ``weights`` themselves.

    Returns
    -------
    image, targets, weights : float32 arrays with the input shapes (C-contiguous).
    """
    image = np.asarray(image, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if image.ndim != 4 or targets.ndim != 4 or weights.ndim != 4:
        raise InputError(
            "augment expects 4D arrays: image (C,Z,Y,X), targets and weights (K,Z,Y,X)"
        )
    if not image.shape[1:] == targets.shape[1:] == weights.shape[1:]:
        raise InputError(
            f"image {image.shape}, targets {targets.shape} and weights {weights.shape} "
            "must have the same (Z, Y, X) shape"
        )

    if z_flipped is not None and (
        np.shape(z_flipped[0]) != targets.shape or np.shape(z_flipped[1]) != weights.shape
    ):
        raise InputError("z_flipped targets and weights must match targets and weights in shape")
    if z_flipped is not None:
        z_flipped = tuple(np.asarray(array, dtype=np.float32) for array in z_flipped)
    image, targets, weights = _flip_and_rotate(image, targets, weights, rng, config, z_flipped)
    if rng.random() < config.p_elastic:
        image, targets, weights = _elastic(image, targets, weights, rng, config)
    image = _intensity(
        np.array(image, dtype=np.float32),
        rng,
        config,
        faces=targets[0],
        cells=targets[1] > 0.5 if len(targets) > 1 else None,
    )
    return (
        np.ascontiguousarray(image, dtype=np.float32),
        np.ascontiguousarray(targets, dtype=np.float32),
        np.ascontiguousarray(weights, dtype=np.float32),
    )


def _flip_and_rotate(image, targets, weights, rng, config, z_flipped=None):
    arrays = [image, targets, weights]
    for axis in (1, 2, 3):
        if rng.random() < config.p_flip:
            if axis == 1 and z_flipped is not None:
                arrays = [image, *z_flipped]
            arrays = [np.flip(array, axis=axis) for array in arrays]
    if rng.random() < config.p_rot90:
        square = image.shape[2] == image.shape[3]
        k = int(rng.integers(1, 4)) if square else 2
        arrays = [np.rot90(array, k=k, axes=(2, 3)) for array in arrays]
    return arrays


def _interpolation_matrix(n_out: int, n_points: int) -> np.ndarray:
    """(n_out, n_points) matrix that upsamples control-point values by cubic splines."""
    if n_points == 1:
        return np.ones((n_out, 1), dtype=np.float32)
    identity = np.eye(n_points, dtype=np.float64)
    columns = [
        ndi.zoom(identity[j], n_out / n_points, order=3, mode="nearest", grid_mode=True)
        for j in range(n_points)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def _smooth_field(shape, points, sigma, rng) -> np.ndarray:
    """Random displacement field of ``shape`` from a ``points`` grid of N(0, sigma) values."""
    control = rng.normal(0.0, sigma, size=points).astype(np.float32)
    matrices = [_interpolation_matrix(n, p) for n, p in zip(shape, points, strict=True)]
    return np.einsum("ai,bj,ck,ijk->abc", *matrices, control, optimize=True)


def _mirror_index(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror out-of-range indices back into [0, size) (scipy's ``mode="mirror"``)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index > size - 1, period - index, index)


def _elastic(image, targets, weights, rng, config):
    shape = image.shape[1:]
    points_yx = max(1, min(config.elastic_points, min(shape[1:])))
    points = (max(1, min(config.elastic_points_z, shape[0])), points_yx, points_yx)
    sigmas = (config.elastic_sigma_z, config.elastic_sigma, config.elastic_sigma)
    grid = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    coordinates = np.stack(
        [
            grid[axis] + _smooth_field(shape, points, sigmas[axis], rng)
            if sigmas[axis] > 0
            else np.broadcast_to(grid[axis], shape)
            for axis in range(3)
        ]
    )
    warped_image = np.stack(
        [
            ndi.map_coordinates(channel, coordinates, order=1, mode="mirror", output=np.float32)
            for channel in image
        ]
    )
    nearest = [
        _mirror_index(np.floor(coordinates[axis] + 0.5).astype(np.intp), shape[axis])
        for axis in range(3)
    ]
    flat_index = np.ravel_multi_index(nearest, shape)
    labels_like = np.concatenate([targets, weights]).reshape(len(targets) + len(weights), -1)
    warped = labels_like[:, flat_index]
    return warped_image, warped[: len(targets)], warped[len(targets) :]


def _uniform(rng: np.random.Generator, bounds: FloatRange) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _intensity(
    image: np.ndarray,
    rng: np.random.Generator,
    config: AugmentationConfig,
    *,
    faces: np.ndarray | None = None,
    cells: np.ndarray | None = None,
):
    n_channels = image.shape[0]
    floors = [float(image[c].min()) for c in range(n_channels)]
    if faces is not None and faces.any() and rng.random() < config.p_face_contrast:
        faces = np.asarray(faces, dtype=np.float32)
        inside = faces <= 0
        if cells is not None:
            # only faces between two cells: those towards the background stay faint
            near_background = ndi.binary_dilation(~cells, structure=np.ones((1, 5, 5), bool))
            faces = np.where(near_background, 0.0, faces).astype(np.float32)
            inside &= cells
        profile = ndi.gaussian_filter(faces, (0.5, 0.7, 0.7))
        for c in range(n_channels):
            gain = _uniform(rng, config.face_contrast_range)
            level = float(np.median(image[c][inside])) if inside.any() else 0.0
            added = np.float32(gain * max(level, 0.0)) * profile
            ratio = noise_variance_ratio(image[c])
            image[c] += added + _shot_noise(np.clip(added, 0.0, None), ratio, rng)
    if rng.random() < config.p_blur:
        for c in range(n_channels):
            sigma_z = _uniform(rng, config.blur_sigma_z_range)
            sigma_xy = _uniform(rng, config.blur_sigma_xy_range)
            ratio = noise_variance_ratio(image[c])
            image[c] = ndi.gaussian_filter(image[c], (sigma_z, sigma_xy, sigma_xy))
            kept = _white_noise_kept((sigma_z, sigma_xy, sigma_xy))
            image[c] += _shot_noise(image[c], ratio * (1.0 - kept), rng)
    if rng.random() < config.p_dim_membrane and config.membrane_channel < n_channels:
        c = config.membrane_channel
        image[c] = _dim_membrane(image[c], _uniform(rng, config.dim_membrane_range))
    if rng.random() < config.p_drift:
        image *= _drift(image.shape[1:], _uniform(rng, config.drift_range), rng)
    for c in range(n_channels):
        if rng.random() < config.p_contrast:
            mean = image[c].mean()
            contrast = _uniform(rng, config.contrast_range)
            brightness = _uniform(rng, config.brightness_range)
            image[c] = (image[c] - mean) * contrast + mean + brightness
        if rng.random() < config.p_gamma:
            image[c] = _gamma(image[c], _uniform(rng, config.gamma_range))
    if rng.random() < config.p_channel_scale:
        for c in range(n_channels):
            image[c] *= _uniform(rng, config.channel_scale_range)
    if rng.random() < config.p_photons:
        for c in range(n_channels):
            fraction = _uniform(rng, config.photon_fraction_range)
            ratio = noise_variance_ratio(image[c])
            image[c] += _shot_noise(image[c], ratio * (1.0 / fraction - 1.0), rng)
    if rng.random() < config.p_gauss_noise:
        for c in range(n_channels):
            std = _uniform(rng, config.noise_std_range)
            image[c] += rng.normal(0.0, std, size=image[c].shape).astype(np.float32)
    # the camera clips at zero: what fell below a channel's floor stays at the floor
    for c in range(n_channels):
        np.maximum(image[c], floors[c], out=image[c])
    # drawn only when enabled, so that patches of runs without it stay as they were
    if config.p_single_channel > 0 and n_channels > 1 and rng.random() < config.p_single_channel:
        image[:] = image[int(rng.integers(n_channels))]
    return image


def noise_variance_ratio(channel: np.ndarray) -> float:
    """Pixel-noise variance per unit intensity of a channel (shot noise: variance ∝ mean).

    Estimated from differences of X neighbours where both lie above the channel's minimum
    (clipped voxels carry no noise), as half their mean square over their mean intensity
    (normalised intensity 0 taken as no light).
    Texture adds to the differences, so this errs towards more noise.
    """
    left, right = channel[..., :-1], channel[..., 1:]
    floor = channel.min()
    both = (left > floor) & (right > floor)
    if both.sum() < 16:
        return 0.0
    variance = 0.5 * float(np.mean((right[both] - left[both]) ** 2))
    mean = float(np.mean(np.clip(0.5 * (right[both] + left[both]), 0.0, None)))
    return variance / mean if mean > 1e-6 else 0.0


def _shot_noise(channel: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise of variance ``ratio`` times the (non-negative) intensity.

    Normalised intensity 0 is the 1st percentile, the camera's zero where a stack clips.
    """
    if ratio <= 0:
        return np.zeros_like(channel)
    intensity = np.clip(channel, 0.0, None)
    std = np.sqrt(ratio * intensity, dtype=np.float32)
    return (std * rng.standard_normal(channel.shape, dtype=np.float32)).astype(np.float32)


def _white_noise_kept(sigma: tuple[float, ...]) -> float:
    """Fraction of white-noise variance that a Gaussian blur of ``sigma`` lets through."""
    kept = 1.0
    for s in sigma:
        if s <= 0:
            continue
        radius = int(4.0 * s + 0.5)
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
        kernel /= kernel.sum()
        kept *= float(np.sum(kernel**2))
    return kept


def _dim_membrane(channel: np.ndarray, factor: float) -> np.ndarray:
    low, high = np.percentile(channel, (1.0, 99.8))
    local_level = ndi.uniform_filter(channel, size=(1, 9, 9))
    excess = np.clip(channel - local_level, 0.0, None)
    dimmed = channel - (1.0 - factor) * excess
    new_low, new_high = np.percentile(dimmed, (1.0, 99.8))
    if new_high - new_low <= 1e-6:
        return dimmed
    return (dimmed - new_low) * ((high - low) / (new_high - new_low)) + low


def _drift(shape, lowest: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative field: linear ramp in a random YX direction and a fall-off with depth."""
    depth, height, width = shape
    angle = rng.uniform(0.0, 2.0 * np.pi)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    ramp = np.cos(angle) * y + np.sin(angle) * x
    ramp = 1.0 - (1.0 - lowest) * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    z_lowest = rng.uniform(lowest, 1.0)
    z = np.linspace(0.0, 1.0, depth, dtype=np.float32)[:, None, None]
    falloff = z_lowest**z
    return (falloff * ramp[None]).astype(np.float32)


def _gamma(channel: np.ndarray, gamma: float) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    if high - low <= 1e-6:
        return channel
    unit = (channel - low) / (high - low)
    return unit**gamma * (high - low) + low
