"""Graph maths: the symmetric-normalised bipartite adjacency and LightGCN-style propagation."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..config.backbones import LAYER_COMBINES


def normalized_adjacency(train: sp.csr_matrix, keep: np.ndarray | None = None) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` for ``A = [[0, R], [R^T, 0]]`` as a torch sparse CSR tensor [n_users + n_items]^2.

    Parameters
    ----------
    train : [n_users, n_items] binary interactions R
    keep : optional bool mask over ``train``'s nonzeros (edge dropout: the edges to keep)
    """
    n_users, n_items = train.shape
    users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(train.indptr))
    items = train.indices.astype(np.int64)
    if keep is not None:
        users, items = users[keep], items[keep]
    n = n_users + n_items
    rows = np.concatenate([users, items + n_users])
    cols = np.concatenate([items + n_users, users])
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    inv_sqrt = np.zeros(n)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    vals = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    m.sort_indices()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                       torch.from_numpy(m.indices.astype(np.int64)), torch.from_numpy(m.data),
                                       size=(n, n))


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the gradient is ``A^T @ g = A @ g`` (no transpose needed).

    torch's generic sparse-CSR backward materialises a transpose and is ~10x slower on CPU.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, ctx.adj @ grad


def propagate(user_emb: torch.Tensor, item_emb: torch.Tensor, adj: torch.Tensor | None, layers: int,
              combine: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Graph propagation of ``E = [users; items]`` over ``layers`` layers, split back into users and items.

    ``combine = "mean"`` (LightGCN): the mean of ``E_0 = E, E_k = A E_{k-1}``.
    ``combine = "normalized_sum"`` (the DDRM reference code's SGL backbone): every layer's output is L2-normalised
    per row before the next layer, ``E_k = normalize(A E_{k-1})``, and the layers are summed, ``E_0 + ... + E_L``.

    Shapes: user_emb [n_users, d], item_emb [n_items, d], adj [n, n] sparse with n = n_users + n_items.
    ``layers = 0`` returns the inputs unchanged. ``adj`` must be symmetric (as built by
    :func:`normalized_adjacency`).
    """
    if combine not in LAYER_COMBINES:
        raise ValueError(f"unknown layer combination {combine!r}; use one of {', '.join(LAYER_COMBINES)}.")
    if layers == 0 or adj is None:
        return user_emb, item_emb
    e = torch.cat([user_emb, item_emb], 0)
    total = e
    for _ in range(layers):
        e = _SymmetricSpMM.apply(adj, e) if e.requires_grad else adj @ e
        if combine == "normalized_sum":
            e = F.normalize(e, p=2, dim=1)
        total = total + e
    if combine == "mean":
        total = total / (layers + 1)
    return total[: user_emb.shape[0]], total[user_emb.shape[0]:]
