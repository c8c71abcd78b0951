import pytest
import torch

from llm_jepa.analysis.plots import plot_singular_values, plot_tsne, tsne_perplexity

PNG = b"\x89PNG\r\n\x1a\n"


def test_singular_value_plot_writes_png(tmp_path):
    path = plot_singular_values({"a": [3.0, 1.0, 0.1], "b": torch.tensor([2.0, 0.5])}, tmp_path / "sv.png")
    assert path.read_bytes().startswith(PNG)


@pytest.mark.parametrize("n", [1, 3, 40])  # 2, 6 and 80 points: perplexity must adapt to tiny sets
def test_tsne_plot_handles_small_sets(tmp_path, n):
    g = torch.Generator().manual_seed(0)
    views = {"m1": (torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)),
             "m2": (torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g))}
    assert plot_tsne(views, tmp_path / "t.png").read_bytes().startswith(PNG)


def test_perplexity_always_below_point_count():
    for n in range(2, 200):
        assert 0 < tsne_perplexity(n) < n
    assert tsne_perplexity(1000) == 30.0
    with pytest.raises(ValueError):
        tsne_perplexity(1)


def test_tsne_plot_survives_fully_collapsed_embeddings(tmp_path):
    ones = torch.ones(20, 6)  # PCA init would divide by zero; sklearn's Barnes-Hut crashes on NaNs
    assert plot_tsne({"collapsed": (ones, ones)}, tmp_path / "t.png").read_bytes().startswith(PNG)
