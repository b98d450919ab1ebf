"""iALS (Hu, Koren and Volinsky, 2008) on the ``implicit`` library: weighted matrix factorisation by alternating
least squares: every unobserved entry is a 0 of confidence 1, every observed one a 1 of confidence ``alpha`` (the
``implicit`` convention: the binary matrix is scaled by ``alpha``), plus ``reg`` times the squared factor norms.

Needs the optional extra ``ddrm[ials]`` (``pip install implicit``). The factors are also a ddrm backend
(``backend.name: ials``) so that DDRM can run on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..data.interactions import Interactions, history_matrix
from ..errors import ConfigError
from ..recommender import Recommender

logger = logging.getLogger(__name__)


def ials_factors(train: sp.csr_matrix, factors: int = 64, reg: float = 1.0, alpha: float = 5.0,
                 iterations: int = 15, seed: int = 0, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """User [n_users, factors] and item [n_items, factors] float32 factors of iALS fitted on ``train``
    ([n_users, n_items] CSR, binary).

    ``reg``: L2 weight; ``alpha``: confidence of an observed entry (unobserved: 1); ``threads``: 0 = all cores.
    Deterministic for a given ``seed`` (the conjugate-gradient solver starts from seeded random factors).
    """
    if factors < 1 or iterations < 1 or reg < 0 or alpha <= 0:
        raise ConfigError(f"iALS needs factors >= 1, iterations >= 1, reg >= 0 and alpha > 0, got factors={factors}, "
                          f"iterations={iterations}, reg={reg}, alpha={alpha}.")
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ConfigError("iALS needs the 'implicit' library: pip install 'ddrm[ials]'.") from None
    x = sp.csr_matrix(train, dtype=np.float32)
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; a threaded BLAS inside it only oversubscribes
        model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=iterations,
                                        random_state=seed, num_threads=threads)
        model.fit(x, show_progress=False)
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def fold_in_factors(x: sp.csr_matrix, item_factors: torch.Tensor, reg: float, alpha: float) -> torch.Tensor:
    """The user factors [B, f] that iALS's user step gives rows ``x`` ([B, n_items] binary CSR) against fixed
    ``item_factors`` Y [n_items, f]: for each row, the exact solution of

        (Y^T Y + reg I + (alpha - 1) sum_{i in row} y_i y_i^T) u = alpha sum_{i in row} y_i,

    the same least-squares problem ``implicit`` solves for a user (``recalculate_user``). Vectorised: the rank-one
    terms are summed per row with ``index_add`` in chunks of about 16 M numbers, then one batched solve (float64).
    """
    y = item_factors.double()
    f = y.shape[1]
    rows = torch.from_numpy(np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)))
    cols = torch.from_numpy(x.indices.astype(np.int64))
    gram = (y.T @ y + reg * torch.eye(f, dtype=torch.float64)).expand(x.shape[0], f, f).clone()
    rhs = torch.zeros(x.shape[0], f, dtype=torch.float64).index_add_(0, rows, y[cols])
    step = max(1, (1 << 24) // (f * f))
    for lo in range(0, cols.numel(), step):  # memory-bounded chunks of interactions, not a loop over users
        yi = y[cols[lo:lo + step]]
        gram.index_add_(0, rows[lo:lo + step], (alpha - 1.0) * yi[:, :, None] * yi[:, None, :])
    return torch.linalg.solve(gram, alpha * rhs).to(item_factors.dtype)


class IALS(Recommender):
    """iALS with ``factors`` latent dimensions; scores = ``U[users] @ V^T``."""

    name = "ials"

    def __init__(self, factors: int = 64, reg: float = 1.0, alpha: float = 5.0, iterations: int = 15,
                 seed: int = 0, threads: int = 0) -> None:
        self.factors = factors
        self.reg = reg
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.threads = threads

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> IALS:
        user, item = ials_factors(data.train, self.factors, self.reg, self.alpha, self.iterations, self.seed,
                                  self.threads)
        self.user_factors_, self.item_factors_ = torch.from_numpy(user), torch.from_numpy(item)
        self.seen_ = data.train
        logger.info("iALS: %d factors, reg %g, alpha %g, %d iterations", self.factors, self.reg, self.alpha,
                    self.iterations)
        return self

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] for int64 user indices [B]."""
        self._check_fitted()
        return self.user_factors_[users.cpu()] @ self.item_factors_.T

    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [len(histories), n_items] for users not in training, each given by an array of item indices: the
        user factor iALS's user step gives the history against the fitted item factors (:func:`fold_in_factors`),
        times the item factors. A known user's own history gives about their fitted factor (exactly, had ALS ended
        on a user step solved exactly)."""
        self._check_fitted()
        x = history_matrix(histories, self.item_factors_.shape[0])
        return fold_in_factors(x, self.item_factors_, self.reg, self.alpha) @ self.item_factors_.T

    def fitted_state(self) -> dict[str, torch.Tensor]:
        return {"user": self.user_factors_, "item": self.item_factors_}

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        self.user_factors_, self.item_factors_, self.seen_ = state["user"], state["item"], data.train
