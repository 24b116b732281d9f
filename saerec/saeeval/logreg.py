"""Many small logistic regressions at once: one per attribute, each on its own few columns.

The suite fits hundreds of probes (every attribute x every k x SAE / neurons); one scikit-learn
fit each took ~12 minutes on ML-1M on 2 cores, so they are fitted together here by Newton's
method on a stacked (A, N, k) tensor. The objective is scikit-learn's ``LogisticRegression(C,
class_weight="balanced")``: 0.5 ||w||^2 + C * sum_i s_i * logloss_i with s_i = N / (2 N_class(i)),
the intercept unpenalised; a test checks the weights against scikit-learn.
"""

from __future__ import annotations

import torch


def fit_logistic(X: torch.Tensor, y: torch.Tensor, C: float = 1.0, iters: int = 50,
                 tol: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """X (A, N, k), y (A, N) bool -> (w (A, k), b (A,)). Problems whose y has one class get w = 0."""
    X = X.double()
    A, N, k = X.shape
    yf = y.double()
    pos = yf.sum(1, keepdim=True)
    ok = (pos[:, 0] > 0) & (pos[:, 0] < N)
    s = torch.where(y, N / (2 * pos.clamp_min(1)), N / (2 * (N - pos).clamp_min(1)))          # balanced weights
    Xb = torch.cat([X, torch.ones(A, N, 1, dtype=X.dtype)], 2)                               # intercept column
    theta = torch.zeros(A, k + 1, dtype=X.dtype)
    reg = torch.full((k + 1,), 1.0 / C, dtype=X.dtype)
    reg[-1] = 0.0
    R = torch.diag(reg)
    for _ in range(iters):
        z = (Xb @ theta[:, :, None])[:, :, 0]
        p = torch.sigmoid(z)
        g = (Xb.transpose(1, 2) @ (s * (p - yf))[:, :, None])[:, :, 0] + theta * reg          # (A, k+1)
        h = s * p * (1 - p)
        H = Xb.transpose(1, 2) @ (Xb * h[:, :, None]) + R + 1e-10 * torch.eye(k + 1, dtype=X.dtype)
        step = torch.linalg.solve(H, g[:, :, None])[:, :, 0]
        theta = theta - step
        if float(step.abs().max()) < tol:
            break
    theta[~ok] = 0.0
    return theta[:, :k], theta[:, k]


def held_out_scores(X_train: torch.Tensor, y_train: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor,
                    C: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit on train (A, N, k), score test (A, M, k): (AUC (A,), F1 at the 0.5 threshold (A,), w, b);
    NaN AUC and F1 where a class is missing on either side."""
    from ..interpret.stats import auc_matrix

    w, b = fit_logistic(X_train, y_train, C)
    score = (X_test.double() @ w[:, :, None])[:, :, 0] + b[:, None]                        # (A, M)
    auc = torch.from_numpy(auc_matrix(score.T.float(), y_test.T).diagonal().copy())
    pred = score > 0
    tp = (pred & y_test).sum(1).double()
    f1 = 2 * tp / (pred.sum(1) + y_test.sum(1)).double().clamp_min(1)
    bad = ~(((y_train.sum(1) > 0) & (y_train.sum(1) < y_train.shape[1])) &
            ((y_test.sum(1) > 0) & (y_test.sum(1) < y_test.shape[1])))
    auc[bad], f1[bad] = float("nan"), float("nan")
    return auc, f1, w, b
