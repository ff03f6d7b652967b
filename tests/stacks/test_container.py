"""What a stack and a size mean in a container (dass.stacks.container), by value."""

import pytest

from dass.stacks.container import container_security_context, cpu_quantity, image_ref, mem_quantity, resources


@pytest.mark.parametrize("image, prefix, tag, ref", [
    ("dass-stack-sem", "", "0.1.0", "dass-stack-sem:0.1.0"),
    ("dass-stack-sem", "registry.example.org/dass/", "0.1.0", "registry.example.org/dass/dass-stack-sem:0.1.0"),
    ("dass-stack-sem", "registry.example.org/dass", "0.1.0", "registry.example.org/dass/dass-stack-sem:0.1.0"),
    ("dass-stack-sem:2026.1", "r.example.org/", "0.1.0", "r.example.org/dass-stack-sem:2026.1"),
    ("registry.example.org:5000/dass-stack-sem", "other.org/", "0.1.0", "registry.example.org:5000/dass-stack-sem:0.1.0"),
    ("localhost/dass-test:abc", "r.example.org/", "0.1.0", "localhost/dass-test:abc"),
    ("ghcr.io/lab/sem@sha256:" + "a" * 64, "", "0.1.0", "ghcr.io/lab/sem@sha256:" + "a" * 64),
    ("lab/sem", "", "", "lab/sem"),
    ("dass-stack-kmap@sha256:ab", "", "0.1.0", "dass-stack-kmap@sha256:ab"),
])
def test_image_references(image, prefix, tag, ref):
    assert image_ref(image, prefix=prefix, tag=tag) == ref


def test_quantities_and_resources():
    assert [cpu_quantity(c) for c in (1, 0.25, 16)] == ["1", "250m", "16"]
    assert [mem_quantity(m) for m in (1024**3, 512 * 1024**2, 1536)] == ["1Gi", "512Mi", "1536"]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            cpu_quantity(bad)
    assert resources(1, 2 * 1024**3) == {"requests": {"cpu": "1", "memory": "2Gi"},
                                         "limits": {"cpu": "1", "memory": "2Gi"}}
    assert resources(4, 1024**3, 2, gpu_resource="amd.com/gpu")["limits"]["amd.com/gpu"] == "2"
    with pytest.raises(ValueError, match="cpu_request_fraction"):
        resources(1, 1024**3, cpu_request_fraction=0)


def test_never_root():
    with pytest.raises(ValueError, match="never run as root"):
        container_security_context(0, 0)
