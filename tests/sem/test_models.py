"""dass.sem.models: every architecture builds and runs; operator-supplied weights load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from dass.sem.models import (  # noqa: E402
    ARCHITECTURES,
    IMAGENET_GRAY_MEAN,
    ModelError,
    build_model,
    default_input_size,
    resolve_device,
)

torch.set_num_threads(2)

REQUIRED = ["resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "inception_v3"]


@pytest.mark.parametrize("arch", REQUIRED)
def test_every_architecture_builds_and_runs_at_its_input_size(arch):
    assert arch in ARCHITECTURES
    size = default_input_size(arch)
    assert size == (299 if arch == "inception_v3" else 224)
    torch.manual_seed(0)
    net = build_model(arch, 10).eval()
    x = torch.rand(1, 1, size, size)
    with torch.inference_mode():
        out = net(x)
        # the grayscale step: the model sees the normalized image repeated on 3 channels
        direct = net.backbone(((x - net.mean) / net.std).expand(-1, 3, -1, -1))
    assert out.shape == (1, 10)
    assert torch.equal(out, direct)


def test_grayscale_input_shapes():
    net = build_model("mobilenet_v3_small", 3).eval()
    x = torch.rand(2, 48, 48)
    with torch.inference_mode():
        assert torch.equal(net(x), net(x.unsqueeze(1)))
        with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
            net(torch.rand(2, 3, 48, 48))


def test_unknown_architecture_and_bad_class_count():
    with pytest.raises(ModelError, match="unknown architecture 'vgg11'.*resnet18"):
        build_model("vgg11", 10)
    with pytest.raises(ModelError, match="unknown architecture"):
        default_input_size("alexnet")
    with pytest.raises(ModelError, match="num_classes must be an integer >= 2"):
        build_model("resnet18", 1)


def test_operator_weights_load_into_the_backbone_but_not_the_head(tmp_path):
    torch.manual_seed(1)
    imagenet_like = torchvision.models.resnet18(weights=None)  # 1000-class head, as ImageNet weights
    path = tmp_path / "resnet18-operator.pth"
    torch.save(imagenet_like.state_dict(), path)

    net = build_model("resnet18", 10, weights=str(path))
    assert torch.equal(net.backbone.conv1.weight, imagenet_like.conv1.weight)
    assert torch.equal(net.backbone.layer4[1].bn2.running_var, imagenet_like.layer4[1].bn2.running_var)
    assert net.backbone.fc.weight.shape == (10, 512)  # the head is new
    assert float(net.mean) == pytest.approx(IMAGENET_GRAY_MEAN)

    # a wrapped checkpoint ({"state_dict": ...}) with "module." prefixes works too
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_like.state_dict().items()}}, wrapped)
    net2 = build_model("resnet18", 10, weights=wrapped)
    assert torch.equal(net2.backbone.conv1.weight, imagenet_like.conv1.weight)


def test_unusable_weights_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(ModelError, match="garbage.pth is not a torch state_dict"):
        build_model("resnet18", 10, weights=garbage)
    with pytest.raises(ModelError, match="missing.pth not found"):
        build_model("resnet18", 10, weights=tmp_path / "missing.pth")
    other = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), other)
    with pytest.raises(ModelError, match="probably for another architecture"):
        build_model("resnet18", 10, weights=other)
    not_tensors = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_tensors)
    with pytest.raises(ModelError, match="does not hold a state_dict"):
        build_model("resnet18", 10, weights=not_tensors)


def test_pretrained_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="does not download them.*weights="):
        build_model("resnet18", 10, pretrained=True)


def test_resolve_device():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ModelError, match="invalid device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_openmp_wait_policy_applies_only_before_torch_and_keeps_the_operators(monkeypatch):
    import os
    import subprocess
    import sys

    from dass.sem.inference import set_openmp_wait_policy
    from dass.sem.models import ModelError

    code = ("import os, sys; from dass.sem.inference import set_openmp_wait_policy as s; "
            "print(s(sys.argv[1]), 'torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def run(policy, **extra):
        return subprocess.run([sys.executable, "-c", code, policy], env={**env, **extra}, capture_output=True,
                              text=True, check=True).stdout.split()

    assert run("passive") == ["True", "False", "PASSIVE"]  # torch is not imported by dass.sem.models
    assert run("passive", OMP_WAIT_POLICY="active") == ["False", "False", "active"]  # the operator's wins
    assert run("") == ["False", "False", "None"]
    # here torch is imported already: nothing changes
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert set_openmp_wait_policy("passive") is False and "OMP_WAIT_POLICY" not in os.environ
    with pytest.raises(ModelError, match="passive"):
        set_openmp_wait_policy("sleepy")
