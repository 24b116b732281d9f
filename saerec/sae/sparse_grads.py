"""Hand-written loss and gradients for the TopK kinds, on the active (row, latent, value) triples.

Autograd trains a TopK SAE through a dense (B, m) code matrix: a scatter of the k kept values into
zeros, a dense decoder GEMM, and in backward two more dense GEMMs and a gather over the same
matrix, though only k of the m codes per row are non-zero. Here only the encoder's forward GEMM
(which the selection needs) is dense; everything after it touches the N = B*k (or, for BatchTopK,
k*B spread over rows) active entries:

    x_hat = b_dec + sum_e vals_e W_dec[col_e]        (rows gathered, summed per row)
    dL/dW_dec[c] += vals_e dL/dx_hat[row_e]          (summed per latent over the active entries)
    dL/dpre_e     = W_dec[col_e] . dL/dx_hat[row_e]  (0 where the value is 0: the ReLU's gate)
    dL/dW_enc[:, c] += dL/dpre_e (x - b_dec)[row_e],  dL/db_enc[c] += dL/dpre_e

Matryoshka's nested prefix losses need no second decoder pass: prefix p's reconstruction is
b_dec plus the per-row sums of the groups up to p, and an entry of group g feeds every prefix
p >= g, so its upstream gradient is the suffix sum of the prefixes' dL/dx_hat_p.

AuxK (dead latents reconstruct the detached residual) is done the same way on its own top
``k_aux`` entries. Same loss parts and gradients as ``forward`` + ``backward`` up to float
rounding (tests/test_sae.py checks every kind).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _assign(p: torch.nn.Parameter, g: torch.Tensor) -> None:
    """Write ``g`` to ``p.grad`` laid out as ``p`` (a fused optimizer needs matching strides)."""
    p.grad = g if g.stride() == p.stride() and g.dtype == p.dtype else torch.empty_like(p).copy_(g)


@torch.no_grad()
def sparse_loss_and_grads(sae, x: torch.Tensor, acts: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                          vals: torch.Tensor, bounds: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Loss parts of a TopK-family training step, with every parameter's ``.grad`` written.

    ``acts``: the (B, m) rectified pre-activations; ``rows``/``cols``/``vals``: the selected codes, ordered
    by row (values >= 0; entries with value 0 carry no gradient, as through the ReLU);
    ``bounds``: Matryoshka's prefix sizes (the last is m), None for one dictionary. Squared
    reconstruction loss only.
    """
    B, d = x.shape
    m = acts.shape[1]
    W, b_dec = sae.W_dec, sae.b_dec
    bounds = bounds or [m]
    G = len(bounds)
    slot = rows if G == 1 else torch.bucketize(cols, cols.new_tensor(bounds[:-1]), right=True) * B + rows
    # decoder: per (prefix group, row) bag, the sum of its value-weighted W_dec rows (embedding_bag:
    # one fused gather-scale-sum); bags must be contiguous, so entries are ordered by slot
    order = None if G == 1 else slot.argsort()
    counts = torch.bincount(slot, minlength=G * B)
    sums = F.embedding_bag(cols if order is None else cols.index_select(0, order), W, counts.cumsum(0) - counts,
                           mode="sum", per_sample_weights=vals if order is None else vals.index_select(0, order))
    err = sums.view(G, B, d)
    err = (err if G == 1 else err.cumsum(0)).add_(b_dec - x)            # prefix p: x_hat_p - x
    sq = err.pow(2).sum((1, 2)) / B                                      # (G,) recon loss per prefix
    d_xhat = err * (2.0 / B)
    if G > 1:
        d_xhat = d_xhat.flip(0).cumsum(0).flip(0)                        # group g feeds prefixes >= g
    g_pre = _entry_dots(d_xhat.view(G * B, d), W, cols, slot).mul_(vals > 0)
    xc = x - b_dec

    fired = torch.zeros(m, dtype=torch.bool, device=W.device)
    fired[cols[vals > 0]] = True
    sae._track_dead(fired, B)
    parts = {"recon": sq[-1]}
    if G > 1:
        parts["recon_prefixes"] = sq[:-1].sum()
    # every entry (the codes', then AuxK's): its latent, its row of upstream gradients in
    # d_src, its row of x - b_dec, its value and its dL/dpre
    lat, src, row, val, g = [cols], [slot], [rows], [vals], [g_pre]
    d_src = d_xhat.view(G * B, d)
    aux = _auxk(sae, acts, -err[-1])
    if aux is not None:
        parts["auxk"], (a_lat, a_row, a_val, a_g, d_aux) = aux
        lat, src, row, val, g = lat + [a_lat], src + [a_row + G * B], row + [a_row], val + [a_val], g + [a_g]
        d_src = torch.cat([d_src, d_aux])
    lat, src, row, val, g = (torch.cat(t) if len(t) > 1 else t[0] for t in (lat, src, row, val, g))
    # W_dec and W_enc gradients: per latent, a weighted sum of rows (embedding_bag over entries
    # ordered by latent; index_add_ over (N, d) sources measured twice as slow, a scatter_add)
    order = lat.argsort()
    counts = torch.bincount(lat, minlength=m)
    offsets = counts.cumsum(0) - counts
    src, row, val, g_ord = (t.index_select(0, order) for t in (src, row, val, g))   # faster than t[order]
    g_dec = F.embedding_bag(src, d_src, offsets, mode="sum", per_sample_weights=val)
    g_encT = F.embedding_bag(row, xc, offsets, mode="sum", per_sample_weights=g_ord)
    g_benc = torch.bincount(lat, weights=g, minlength=m).to(W.dtype)
    g_bdec = d_xhat[0].sum(0) - sae.W_enc @ g_benc
    for p, grad in ((sae.W_enc, g_encT.T), (W, g_dec), (sae.b_enc, g_benc), (b_dec, g_bdec)):
        _assign(p, grad)
    return parts


def _entry_dots(grad: torch.Tensor, W: torch.Tensor, lat: torch.Tensor, bag: torch.Tensor) -> torch.Tensor:
    """Per entry e, ``grad[bag[e]] . W[lat[e]]``: what an ``embedding_bag`` sum's backward gives its
    per-sample weights, done by that backward's own fused kernel (bags in any order). Gathering
    both (N, d) operands, multiplying and summing took 2.1 ms per TopK step against 0.1 ms
    (N = 256 x 32, d 64, one thread); a batched (k x d) @ (d x 1) product, 0.44 ms."""
    offsets = lat.new_zeros(1)          # unused for these arguments: each entry's bag comes from ``bag``
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(grad.to(W.dtype), W, lat, offsets, bag, 0, -1)


def _auxk(sae, acts, residual):
    """AuxK (``TopKSAE.aux_loss``) on the latents dead after this batch: its loss and its entries
    (latent, row, value, dL/dpre) with their upstream gradient rows, or None."""
    dead = sae.dead_mask()
    n_dead = int(dead.sum())
    if n_dead == 0 or sae.cfg.auxk_alpha <= 0:
        return None
    B = residual.shape[0]
    k_aux = min(sae.cfg.k_aux or sae.d_in // 2, n_dead)
    # the top k_aux among the dead latents' columns only: the same picks as a top-k over the whole
    # matrix with the live latents masked to 0 (ties at 0 add nothing), at a cost that shrinks with
    # the dead count (a few percent of the dictionary once training settles) instead of a second
    # full-width top-k per step
    dead_idx = dead.nonzero().squeeze(1)
    avals, j = acts.index_select(1, dead_idx).topk(k_aux, dim=-1, sorted=False)
    aidx = dead_idx.index_select(0, j.flatten())
    rows = torch.arange(B, device=acts.device).repeat_interleave(k_aux)
    avals = avals.flatten()
    e = F.embedding_bag(aidx.view(B, k_aux), sae.W_dec, mode="sum",
                        per_sample_weights=avals.view(B, k_aux)).sub_(residual)   # recon - residual
    denom = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    alpha = sae.auxk_weight()
    loss = alpha * e.pow(2).sum(-1).mean() / denom
    d_e = e.mul_(2.0 * alpha / B / denom)                                # (B, d)
    g_a = _entry_dots(d_e, sae.W_dec, aidx, rows).mul_(avals > 0)
    return loss, (aidx, rows, avals, g_a, d_e)
