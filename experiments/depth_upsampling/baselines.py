"""Classical baselines for guided depth upsampling: bicubic interpolation and He et al.'s guided filter."""
import torch
import torch.nn.functional as F


def bicubic_upsample(depth_lr, scale_factor):
    """(B, 1, h, w) → (B, 1, S·h, S·w), bicubic (``align_corners=False``)."""
    return F.interpolate(depth_lr, scale_factor=scale_factor, mode='bicubic', align_corners=False)


def box_filter(x, radius):
    """Mean of x over the (2r+1)² window around every pixel, the window clipped at the image border. x: (B, C, H, W)."""
    k = 2 * radius + 1
    return F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide, src, radius, eps):
    """Guided filter (He, Sun, Tang, ECCV 2010 / TPAMI 2013) with a multi-channel guide.

    In every window ω the output is locally affine in the guide, ``q = aᵀ·I + b``, with (a, b) minimising
    ``Σ_ω (aᵀ·I + b − p)² + eps·|a|²``: ``a = (Σ_I + eps·U)⁻¹ cov(I, p)``, ``b = mean(p) − aᵀ·mean(I)``; the
    coefficients of all windows covering a pixel are averaged. A window of radius r is clipped at the border.

    Args:
        guide: I, (B, Cg, H, W) (e.g. RGB in [0, 1]; Cg = 1 is the grey-scale filter).
        src: p, (B, 1, H, W) (e.g. the bicubically upsampled depth).
        radius: window radius r >= 1. eps: regulariser > 0 (in squared guide units).

    Returns:
        q, (B, 1, H, W).
    """
    if guide.dim() != 4 or src.dim() != 4 or src.shape[1] != 1 or guide.shape[0] != src.shape[0] \
            or guide.shape[2:] != src.shape[2:]:
        raise ValueError(f'guided_filter: guide must be (B, Cg, H, W) and src (B, 1, H, W), got '
                         f'{tuple(guide.shape)} and {tuple(src.shape)}')
    if not isinstance(radius, int) or radius < 1 or not eps > 0:
        raise ValueError(f'guided_filter: radius must be an int >= 1 and eps > 0, got {radius!r}, {eps!r}')
    guide, src = guide.double(), src.double()
    b, c, h, w = guide.shape
    mean_i, mean_p = box_filter(guide, radius), box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p  # (B, Cg, H, W)
    outer = (guide[:, :, None] * guide[:, None]).reshape(b, c * c, h, w)
    sigma = (box_filter(outer, radius).reshape(b, c, c, h, w) - mean_i[:, :, None] * mean_i[:, None])
    sigma = sigma.permute(0, 3, 4, 1, 2) + eps * torch.eye(c, dtype=sigma.dtype)  # (B, H, W, Cg, Cg)
    a = torch.linalg.solve(sigma, cov_ip.permute(0, 2, 3, 1)[..., None])[..., 0].permute(0, 3, 1, 2)
    bias = mean_p - (a * mean_i).sum(1, keepdim=True)
    q = (box_filter(a, radius) * guide).sum(1, keepdim=True) + box_filter(bias, radius)
    return q.float()
