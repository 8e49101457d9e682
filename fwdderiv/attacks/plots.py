"""Figures of a JSMA run (matplotlib, an optional extra: ``pip install fwdderiv[data]``)."""
import numpy as np

__all__ = ["require_matplotlib", "plot_adversarial_grid", "plot_saliency_maps", "plot_hardness"]


def require_matplotlib(who="fwdderiv"):
    """Import matplotlib with the non-interactive Agg backend, or explain how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"{who} draws its figures with matplotlib, which is not "
                          "installed; install it with pip install 'fwdderiv[data]' "
                          "(or pip install matplotlib).") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _image(x):
    """(C, H, W) in [0, 1] -> what imshow wants: (H, W) grey or (H, W, 3) colour."""
    return x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)


def plot_adversarial_grid(originals, grid, path, n_classes=10, title=None, failed=()):
    """The paper's figure of adversarial samples: row = source class, column = target.

    Parameters
    ----------
    originals : dict int -> ndarray of shape (C, H, W)
        One benign sample per source class (drawn on the diagonal).
    grid : dict (int, int) -> ndarray of shape (C, H, W)
        Adversarial sample crafted from ``originals[s]`` towards ``t``; a missing or
        unsuccessful entry may be left out (drawn blank).
    path : str or Path
        PNG file to write.
    n_classes : int
    title : str, optional
    failed : collection of (int, int)
        Cells whose sample did not reach its target: framed in red.
    """
    plt = require_matplotlib("plot_adversarial_grid")
    fig, axes = plt.subplots(n_classes, n_classes, figsize=(n_classes, n_classes + 0.4))
    for s in range(n_classes):
        for t in range(n_classes):
            ax = axes[s, t]
            ax.set_xticks([])
            ax.set_yticks([])
            img = originals.get(s) if s == t else grid.get((s, t))
            if img is not None:
                ax.imshow(_image(img), cmap="gray", vmin=0, vmax=1)
            if (s, t) in failed:
                for spine in ax.spines.values():
                    spine.set_color("red")
                    spine.set_linewidth(2)
            if s == n_classes - 1:
                ax.set_xlabel(str(t))
            if t == 0:
                ax.set_ylabel(str(s))
    fig.supxlabel("target class")
    fig.supylabel("source class")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_saliency_maps(samples, maps, sources, path, titles=None):
    """Saliency heatmaps: per row one sample, then its map for every target class.

    Parameters
    ----------
    samples : ndarray of shape (R, C, H, W)
    maps : ndarray of shape (R, K, C, H, W)
        Increasing saliency map ``S(x, t)`` (eq. 8) for each target ``t``; channels are
        summed for display.
    sources : sequence of int
        Class of each row.
    path : str or Path
    """
    plt = require_matplotlib("plot_saliency_maps")
    r, k = maps.shape[:2]
    fig, axes = plt.subplots(r, k + 1, figsize=(1.2 * (k + 1), 1.3 * r + 0.5), squeeze=False)
    for i in range(r):
        axes[i, 0].imshow(_image(samples[i]), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(f"source {sources[i]}")
        for t in range(k):
            m = maps[i, t].sum(axis=0)
            axes[i, t + 1].imshow(m, cmap="hot", vmin=0, vmax=max(float(m.max()), 1e-30))
            if i == 0:
                axes[i, t + 1].set_title(f"t={t}", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=9)
    fig.suptitle("Adversarial saliency maps S(x, t), eq. (8): bright = increase this "
                 "feature", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_hardness(H, path, title=None, reached=None):
    """The paper's hardness figure: H(s, t) as a heat map, row source, column target.

    Parameters
    ----------
    H : ndarray of shape (K, K)
        :attr:`~fwdderiv.attacks.metrics.HardnessMatrix.matrix`; NaN cells are drawn
        blank, or grey with the reached success rate when ``reached`` is given there.
    path : str or Path
        PNG file to write.
    title : str, optional
    reached : ndarray of shape (K, K), optional
        The highest success rate of each pair
        (:attr:`~fwdderiv.attacks.metrics.HardnessMatrix.reached_high`): masked cells
        are labelled with it, so a rarely successful pair is not a blank that reads easy.
    """
    plt = require_matplotlib("plot_hardness")
    k = H.shape[0]
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    if reached is not None:
        grey = np.where(np.isnan(H) & np.isfinite(reached), 1.0, np.nan)
        ax.imshow(np.ma.masked_invalid(grey), cmap="Greys", vmin=0, vmax=4)
    im = ax.imshow(np.ma.masked_invalid(H), cmap="viridis")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("target class")
    ax.set_ylabel("source class")
    for s in range(k):
        for t in range(k):
            if np.isfinite(H[s, t]):
                ax.text(t, s, f"{H[s, t]:.3f}", ha="center", va="center", fontsize=5,
                        color="w")
            elif reached is not None and np.isfinite(reached[s, t]):
                ax.text(t, s, f"<{100 * reached[s, t]:.0f}%", ha="center", va="center",
                        fontsize=5, color="k")
    fig.colorbar(im, ax=ax, label="hardness H(s, t)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
