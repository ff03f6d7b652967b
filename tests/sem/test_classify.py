"""dass.sem.checkpoint and dass.sem.classify: round trip, corrupt files, batch inference."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from dass.sem.categories import CATEGORY_IDS, display_name  # noqa: E402
from dass.sem.checkpoint import (  # noqa: E402
    FORMAT,
    CheckpointError,
    ModelInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from dass.sem.classify import Classifier, Prediction  # noqa: E402
from dass.sem.databar import preprocess  # noqa: E402
from dass.sem.io import SemReadError, read_sem  # noqa: E402
from dass.sem.models import build_model  # noqa: E402
from dass.sem.synthetic import generate  # noqa: E402

torch.set_num_threads(2)
SIZE = 48


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_and_info():
    torch.manual_seed(3)
    model = build_model("mobilenet_v3_small", 10).eval()
    info = ModelInfo(name="tiny", architecture="mobilenet_v3_small", classes=list(CATEGORY_IDS), input_size=SIZE,
                     mean=float(model.mean), std=float(model.std),
                     trained_on={"url": "memory://x", "fingerprint": "sha256:0", "n_images": 0, "per_class": {},
                                 "synthetic": True},
                     notes="untrained test model")
    return model, info


@pytest.fixture(scope="module")
def checkpoint(model_and_info, tmp_path_factory):
    model, info = model_and_info
    reps = {"Tips": _png(generate("Tips", size=(64, 64), seed=1))}
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    assert save_checkpoint(path, model, info, representatives=reps) == str(path)
    return path


@pytest.fixture(scope="module")
def images():
    return [generate(c, size=(80, 96), seed=5) for c in CATEGORY_IDS[:5]]


def test_checkpoint_round_trip_gives_identical_predictions(model_and_info, checkpoint, images):
    model, info = model_and_info
    loaded, info2, reps = load_checkpoint(checkpoint)
    assert not loaded.training
    assert info2.to_json() == info.to_json()
    assert info2.display_names == [display_name(c) for c in CATEGORY_IDS]
    assert info2.synthetic is True
    assert reps["Tips"].startswith(b"\x89PNG")
    x = torch.from_numpy(np.stack([preprocess(i, SIZE) for i in images])).unsqueeze(1)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert read_checkpoint_info(checkpoint).name == "tiny"

    # through an fsspec URL as well
    url = "memory://sem-test-classify/model.pt"
    save_checkpoint(url, model, info)
    loaded2, _, reps2 = load_checkpoint(url)
    assert reps2 == {}
    with torch.inference_mode():
        assert torch.equal(model(x), loaded2(x))


def test_not_a_checkpoint_is_a_checkpoint_error(tmp_path, checkpoint):
    cases = {
        "random.pt": np.random.default_rng(0).bytes(4000),
        "empty.pt": b"",
        "truncated.pt": checkpoint.read_bytes()[:5000],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError, match=r"random.pt: not a readable checkpoint, corrupt or not a torch file"):
        load_checkpoint(tmp_path / "random.pt")
    with pytest.raises(CheckpointError, match=r"empty.pt: empty file"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=r"truncated.pt: not a readable checkpoint, corrupt or truncated"):
        load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match=r"missing.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")

    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain.pt: not a dass SEM checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with open(tmp_path / "object.pt", "wb") as fh:  # a pickle of an arbitrary object: never unpickled
        pickle.dump({"format": FORMAT, "x": tmp_path}, fh, protocol=2)
    with pytest.raises(CheckpointError, match=r"object.pt: not a dass checkpoint \(it holds Python objects"):
        load_checkpoint(tmp_path / "object.pt")

    obj = torch.load(checkpoint, weights_only=True)
    obj["version"] = 99
    torch.save(obj, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future.pt: checkpoint format version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")
    obj["version"] = 1
    obj["info"]["architecture"] = "resnet18"
    torch.save(obj, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match=r"mismatch.pt: the weights do not fit a resnet18"):
        load_checkpoint(tmp_path / "mismatch.pt")
    del obj["info"]["classes"]
    torch.save(obj, tmp_path / "noclasses.pt")
    with pytest.raises(CheckpointError, match=r"noclasses.pt: model info field 'classes' is missing"):
        load_checkpoint(tmp_path / "noclasses.pt")


def test_classify_matches_a_plain_forward_pass_for_every_input_type(model_and_info, checkpoint, images, tmp_path):
    model, _ = model_and_info
    clf = Classifier.load(checkpoint, device="cpu")
    assert clf.device == "cpu" and clf.info.name == "tiny"
    x = torch.from_numpy(np.stack([preprocess(i, SIZE) for i in images])).unsqueeze(1)
    with torch.inference_mode():
        expected = torch.softmax(model(x), 1).numpy()

    preds = clf.classify(images, batch_size=2)
    assert len(preds) == len(images)
    for p, probs in zip(preds, expected):
        assert list(p.scores) == list(CATEGORY_IDS)
        assert sum(p.scores.values()) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose([p.scores[c] for c in CATEGORY_IDS], probs, rtol=1e-5, atol=1e-6)
        assert p.category == CATEGORY_IDS[int(np.argmax(probs))]
        assert p.certainty == pytest.approx(float(probs.max()), abs=1e-6)

    # the same image as PNG bytes, a file path, a URL, a PIL image and a SemImage gives the same scores
    png = _png(images[0])
    path = tmp_path / "one.png"
    path.write_bytes(png)
    import fsspec

    fsspec.filesystem("memory").pipe_file("/sem-test-classify/one.png", png)
    variants = [png, str(path), path, "memory://sem-test-classify/one.png", Image.open(io.BytesIO(png)),
                read_sem(png), images[0]]
    results = clf.classify(variants, batch_size=3)
    for r in results:
        np.testing.assert_allclose(list(r.scores.values()), list(results[0].scores.values()), atol=1e-6)
    np.testing.assert_allclose(list(results[0].scores.values()), expected[0], rtol=1e-5, atol=1e-6)

    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        clf.classify(images, batch_size=0)


def test_prediction_json_has_display_names():
    p = Prediction("Tips", 0.7, {"Tips": 0.7, "Powder": 0.3})
    j = p.to_json()
    assert j["display_name"] == "Tips" and j["certainty"] == 0.7
    assert j["scores"][0] == {"category": "Tips", "display_name": "Tips", "score": 0.7}
    assert j["scores"][1]["display_name"] == "Powder"


def test_corrupt_input_raises_naming_the_item_or_is_reported_per_file(checkpoint, images, tmp_path):
    clf = Classifier.load(checkpoint)
    bad = tmp_path / "broken.png"
    bad.write_bytes(_png(images[0])[:60])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(SemReadError, match="broken.png"):
        clf.classify([images[0], bad])
    with pytest.raises(SemReadError, match="item 1: expected a 2-D grayscale"):
        clf.classify([images[0], np.zeros(5)])

    good = tmp_path / "good.png"
    good.write_bytes(_png(images[1]))
    outcomes = clf.classify_files([good, bad, text, b"", images[2], 42],
                                  names=["good.png", "broken.png", "notes.txt", "empty.png", "array", "number"])
    assert [o.ok for o in outcomes] == [True, False, False, False, True, False]
    assert "broken.png" in outcomes[1].error and "corrupt" in outcomes[1].error
    assert outcomes[2].error.startswith("not an image: ") and "notes.txt" in outcomes[2].error
    assert outcomes[3].error == "empty file: empty.png has no data"
    assert "cannot classify a int" in outcomes[5].error
    direct = clf.classify([images[1], images[2]])
    assert outcomes[0].prediction.scores == pytest.approx(direct[0].scores, abs=1e-6)
    assert outcomes[4].prediction.scores == pytest.approx(direct[1].scores, abs=1e-6)
    assert outcomes[1].to_json() == {"name": "broken.png", "status": "error", "reason": outcomes[1].error}
    assert outcomes[0].to_json()["status"] == "ok"


def test_representative(checkpoint):
    clf = Classifier.load(checkpoint)
    assert Image.open(io.BytesIO(clf.representative("Tips"))).size == (64, 64)
    assert clf.representative("Powder") is None


@pytest.mark.parametrize("mode", ["eager", "channels_last", "freeze", "auto"])
def test_every_acceleration_gives_the_eager_scores(checkpoint, images, mode):
    eager = Classifier.load(checkpoint, device="cpu", accelerate="eager")
    fast = Classifier.load(checkpoint, device="cpu", accelerate=mode)
    # auto: the fastest of eager, channels_last and freeze, timed on this machine
    assert fast.acceleration in (("eager", "channels_last", "freeze") if mode == "auto" else (mode,))
    for batch in (1, 2, len(images)):  # the traced module handles every batch size
        a, b = eager.classify(images[:batch]), fast.classify(images[:batch])
        for p, q in zip(a, b):
            assert p.category == q.category
            np.testing.assert_allclose(list(p.scores.values()), list(q.scores.values()), atol=1e-5)


def test_an_acceleration_that_fails_falls_back_cleanly(model_and_info):
    from dass.sem.inference import accelerate
    from dass.sem.models import ModelError

    class Untraceable(torch.nn.Module):  # returns a dict: jit.trace refuses it, softmax cannot take it
        architecture = "untraceable"

        def forward(self, x):
            return {"logits": x.mean(dim=(1, 2, 3))[:, None].repeat(1, 10)}

    module = Untraceable().eval()
    runner, mode = accelerate(module, input_size=SIZE, mode="freeze")
    assert mode == "eager" and runner is module

    class Drifting(torch.nn.Module):  # its output changes from call to call: every speed-up fails the check
        architecture = "drifting"

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x.mean(dim=(1, 2, 3))[:, None] * torch.arange(10.0) * self.calls

    module = Drifting().eval()
    runner, mode = accelerate(module, input_size=SIZE, mode="freeze")
    assert mode == "eager" and runner is module
    model, _ = model_and_info
    with pytest.raises(ModelError, match="unknown acceleration 'fast'; use one of: auto, eager"):
        accelerate(model, input_size=SIZE, mode="fast")


def test_run_shares_preparation_and_forward_passes_between_workers_in_bounded_memory(checkpoint, images):
    import threading

    clf = Classifier.load(checkpoint, device="cpu")
    clf.threads = 2
    inputs = [preprocess(i, SIZE) for i in images] * 6  # 24 items
    batch_size = 4
    producers, forwards, ahead = set(), [], []
    lock = threading.Lock()
    network = clf.runner
    done = [0]

    def runner(x):  # the module inference calls, watched
        forwards.append((threading.current_thread().name, x.shape[0], torch.get_num_threads()))
        return network(x)

    clf.runner = runner

    def produce(i):
        with lock:
            producers.add(threading.current_thread().name)
            ahead.append(i - done[0])
        return None if i == 5 else inputs[i]  # item 5 skipped

    def progress(n, total, message):
        assert total == len(inputs) and message == "classified"
        done[0] = n

    caller = threading.current_thread().name
    before = torch.get_num_threads()
    out = clf.run(len(inputs), produce, batch_size=batch_size, progress=progress)
    assert sorted(out) == [i for i in range(len(inputs)) if i != 5]
    assert done[0] == len(inputs) - 1  # progress counts what went through the network
    assert producers <= {caller, "sem-worker-1"}
    assert all(n <= batch_size and t == 1 for _, n, t in forwards)  # one intra-op thread per worker
    assert torch.get_num_threads() == before
    clf.runner = network
    direct = clf.classify([inputs[i] for i in sorted(out)], batch_size=batch_size)
    for i, p in zip(sorted(out), direct):
        np.testing.assert_allclose(list(out[i].scores.values()), list(p.scores.values()), atol=1e-6)
    # inputs held ahead of the network: about a quarter batch per worker, never a whole request
    assert max(ahead) <= 2 * batch_size + 2

    # one image: the direct path on the calling thread
    producers.clear()
    single = clf.run(1, produce, batch_size=batch_size)
    assert producers == {caller} and list(single) == [0]

    # an error while preparing stops the run and is raised to the caller; nothing hangs
    def failing(i):
        if i == 7:
            raise SemReadError("item 7: broken")
        return inputs[i]

    prepared = []
    with pytest.raises(SemReadError, match="item 7: broken"):
        clf.run(len(inputs), failing, batch_size=2, prepared=lambda: prepared.append(True))
    assert prepared == [True]  # called at the end when the run fails before everything is prepared
    assert torch.get_num_threads() == before
    prepared.clear()
    clf.run(3, lambda i: inputs[i], prepared=lambda: prepared.append(True))
    assert prepared == [True]


def test_run_uses_every_worker_when_one_is_held_up(checkpoint, images):
    """While one worker prepares a slow item, the other prepares and classifies the rest: the
    work goes to whichever worker is free, both prepare and both run the network."""
    import threading

    clf = Classifier.load(checkpoint, device="cpu")
    clf.threads = 2
    inputs = [preprocess(i, SIZE) for i in images] * 3  # 12 items
    forwarded = threading.Event()
    producers, forwarders = {}, set()
    network = clf.runner

    def runner(x):
        forwarders.add(threading.current_thread().name)
        forwarded.set()
        return network(x)

    clf.runner = runner

    def produce(i):
        producers[i] = threading.current_thread().name
        if i == 0:  # held until the other worker has run the network
            assert forwarded.wait(30)
        return inputs[i]

    out = clf.run(len(inputs), produce, batch_size=4)
    assert sorted(out) == list(range(len(inputs)))
    slow = producers[0]
    assert {name for i, name in producers.items() if i} - {slow}  # the other one prepared meanwhile
    assert forwarders - {slow}  # the network ran on the other worker while item 0 was held


def test_single_image_threads_and_the_thread_count_of_the_caller(checkpoint, images):
    """A single image runs at ``single_threads`` intra-op threads (the faster of one and
    ``threads``, measured), one fewer while the caller stores its upload; the calling thread's
    torch setting is back afterwards."""
    clf = Classifier.load(checkpoint, device="cpu")
    clf.threads = 3
    assert clf.single_threads in (1, 3)  # measured again for the new count
    inputs = [preprocess(i, SIZE) for i in images]
    seen = []
    network = clf.runner

    def runner(x):
        seen.append(torch.get_num_threads())
        return network(x)

    clf.runner = runner
    before = torch.get_num_threads()
    for measured in (1, 3):
        clf._single_threads = measured  # as if measured so
        seen.clear()
        clf.run(1, lambda i: inputs[0], prepared=lambda: None)  # the caller works meanwhile
        clf.run(1, lambda i: inputs[0])  # nothing else runs
        assert seen == ([1, 1] if measured == 1 else [2, 3])
        assert torch.get_num_threads() == before
    clf.threads = 1
    assert clf.single_threads == 1


def test_reading_notes_travel_with_the_outcome(checkpoint, images):
    import tifffile

    from dass.sem.results import outcome_lines

    clf = Classifier.load(checkpoint, device="cpu")
    twelve = (images[0].astype(np.int64) * 4095 // 255).astype(np.uint16)
    twelve[0, 0] = 4095
    buf = io.BytesIO()
    tifffile.imwrite(buf, twelve, metadata=None)
    outcomes = clf.classify_files([buf.getvalue(), _png(images[0])], names=["twelve.tif", "eight.png"])
    assert len(outcomes[0].notes) == 1 and "12-bit data in a 16-bit TIFF" in outcomes[0].notes[0]
    assert outcomes[1].notes == []
    assert outcomes[0].to_json()["notes"] == outcomes[0].notes
    # scaled by 4095, the 12-bit image classifies like its 8-bit twin
    np.testing.assert_allclose(list(outcomes[0].prediction.scores.values()),
                               list(outcomes[1].prediction.scores.values()), atol=2e-3)
    lines = outcome_lines(outcomes).splitlines()
    assert "; note: 12-bit data in a 16-bit TIFF" in lines[0] and "note" not in lines[1]


