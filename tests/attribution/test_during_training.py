"""AttributionRecorder as a fit callback: frames at the right steps, equal to the
attribution of the network as it was then; the training-integrated variant."""
import numpy as np
import pytest
from PIL import Image

import fwdderiv as fd
from fwdderiv.attribution import AttributionRecorder, InputXGradient


def test_records_every_k_updates_and_writes_gif_and_strip(tmp_path):
    ds = fd.datasets.load_dataset("digits")
    x, y = ds.x_train[:96], ds.y_train[:96]
    watched, labels = ds.x_test[:3], ds.y_test[:3]
    net = fd.models.digits_net(seed=0)
    rec = AttributionRecorder(watched, labels, every=2)
    snapshots = {}

    def snapshot(net, step):            # the attribution with the weights of that step
        if step % 2 == 0:
            snapshots[step] = InputXGradient(net).attribute(watched, target=labels)

    fd.training.fit(net, x, y, epochs=2, batch_size=16, callbacks=[rec, snapshot],
                    progress=False)
    assert rec.steps == [2, 4, 6, 8, 10, 12] == sorted(snapshots)
    for step, frame in zip(rec.steps, rec.frames):
        np.testing.assert_allclose(frame, snapshots[step], rtol=1e-12, atol=1e-15)
    # integrated over training: the mean gradient over the recorded steps, times x
    mean_frame = np.mean(rec.frames, axis=0)      # gradient x input averaged = mean grad * x
    np.testing.assert_allclose(rec.integrated(), mean_frame, rtol=1e-5, atol=1e-9)  # float32
    assert not np.allclose(rec.frames[0], rec.frames[-1])     # the network learned
    rec.save_gif(tmp_path / "a.gif")
    rec.save_strip(tmp_path / "a.png")
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 6
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_bad_arguments():
    x = np.zeros((2, 1, 8, 8))
    with pytest.raises(ValueError, match="every as an integer >= 1"):
        AttributionRecorder(x, 0, every=0)
    with pytest.raises(ValueError, match="method in"):
        AttributionRecorder(x, 0, method="occlusion")
    with pytest.raises(ValueError, match="nothing recorded yet"):
        AttributionRecorder(x, 0).integrated()
    with pytest.raises(TypeError, match="callbacks as a sequence of callables"):
        fd.training.fit(fd.models.digits_net(), x, np.array([0, 1]), callbacks=[3])


def _titles_of_saved_figures(monkeypatch):
    """Patch Figure.savefig to collect the axes titles of every figure saved."""
    from matplotlib.figure import Figure

    titles, save = [], Figure.savefig

    def spy(fig, *args, **kwargs):
        titles.append([ax.get_title() for ax in fig.axes])
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return titles


def test_colour_photos_and_class_names(tmp_path, monkeypatch):
    """3x64x64 photos (a folder the test writes) with a photo_cnn: frames shaped like the
    inputs, the outputs recorded with them, the input drawn in the first column and the
    class names and probabilities in the titles."""
    from ..datasets.makers import make_photos

    make_photos(tmp_path / "photos", per_class=4, size=(30, 40))
    ds = fd.datasets.load_dataset("folder", data_dir=tmp_path / "photos", image_size=(64, 64))
    net = fd.models.photo_cnn((3, 64, 64), n_classes=ds.n_classes, seed=0)
    watched, labels = ds.x_test, ds.y_test
    rec = AttributionRecorder(watched, labels, method="abs_input_x_gradient", every=1,
                              classes=ds.classes)
    outputs = {}
    fd.training.fit(net, ds.x_train, ds.y_train, epochs=1, batch_size=3, optimizer="adam",
                    lr=1e-3, callbacks=[rec, lambda n, s: outputs.setdefault(s, n(watched))],
                    progress=False)
    n, steps = len(labels), -(-len(ds.y_train) // 3)
    assert rec.steps == list(range(1, steps + 1)) and steps >= 3
    assert rec.frames[0].shape == watched.shape == (n, 3, 64, 64) and n >= 2
    for step, out in zip(rec.steps, rec.outputs):
        np.testing.assert_array_equal(out, outputs[step])
    np.testing.assert_array_equal(     # |gradient| x input of the final weights
        rec.frames[-1], InputXGradient(net).attribute(watched, labels, abs_gradient=True))
    titles = _titles_of_saved_figures(monkeypatch)
    rec.save_strip(tmp_path / "strip.png")
    rec.save_gif(tmp_path / "anim.gif")
    strip, cols = titles[0], 1 + steps
    for r, k in enumerate(labels):     # row r: the class name, then step and probability
        assert strip[r * cols] == ds.classes[k] and ds.classes[k] in ("cats", "dogs", "owls")
        assert strip[r * cols + 1:(r + 1) * cols] == [
            f"step {s}\np = {out[r, k]:.2f}" for s, out in zip(rec.steps, rec.outputs)]
    assert len(titles) == 1 + steps and all(len(t) == 2 * n for t in titles[1:])
    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.n_frames == steps
    with Image.open(tmp_path / "strip.png") as png:
        assert png.size[0] > png.size[1]          # more columns than rows


def test_logits_titles_and_drawing_needs_images(tmp_path):
    ds = fd.datasets.load_dataset("digits")
    net = fd.models.digits_net(seed=0)[:-1]             # logits: titled F, not p
    rec = AttributionRecorder(ds.x_test[:2], [1, 2], every=1)
    rec(net, 1)
    assert rec.outputs[0].shape == (2, 10) and rec.outputs[0].min() < 0
    rec.save_strip(tmp_path / "a.png")
    flat = AttributionRecorder(ds.x_test[:2].reshape(2, -1), 0, every=1)
    flat(fd.Sequential([fd.Linear(64, 3, seed=0)]), 1)
    with pytest.raises(ValueError, match=r"draws images: expected inputs of shape \(N, C, H, W\)"):
        flat.save_strip(tmp_path / "b.png")
    with pytest.raises(TypeError, match="classes as a sequence of class names"):
        AttributionRecorder(ds.x_test[:2], 0, classes="0123456789")


def test_record_steps():
    ds = fd.datasets.load_dataset("digits")
    rec = AttributionRecorder(ds.x_test[:2], ds.y_test[:2], every=1000, record_steps=[1, 2, 5, 9])
    fd.training.fit(fd.models.digits_net(seed=0), ds.x_train[:64], ds.y_train[:64], epochs=2,
                    batch_size=16, callbacks=[rec], progress=False)        # 8 updates
    assert rec.steps == [1, 2, 5] and len(rec.frames) == len(rec.outputs) == 3
    for bad in ([], [0, 3], [1.5], "12"):
        with pytest.raises(ValueError, match="record_steps as a non-empty sequence"):
            AttributionRecorder(ds.x_test[:2], 0, record_steps=bad)
