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
