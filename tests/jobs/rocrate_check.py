"""Run the reference RO-Crate validator (``roc-validator``, profile ro-crate-1.3, REQUIRED
checks) on a crate folder, on a machine without internet.

The validator fetches the RO-Crate JSON-LD context from w3id.org through its HTTP cache. Here
the cache is seeded with the same context as shipped inside the ``rocrate`` package (what
dass builds its crates with), served to the validator's cache by a local transport adapter,
and the validator runs offline. It runs in a subprocess: its HTTP requester is a
process-wide singleton.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONTEXT_URL = "https://w3id.org/ro/crate/1.3/context"

_SCRIPT = r"""
import io, json, pathlib, sys
import rocrate
from requests.adapters import HTTPAdapter
from requests_cache import CachedSession
from urllib3 import HTTPResponse

crate_dir, cache, url = sys.argv[1:4]
context = json.loads((pathlib.Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_text())
body = json.dumps({"@context": context["@context"]}).encode()


class Shipped(HTTPAdapter):
    def send(self, request, **kwargs):
        if request.url != url:
            raise OSError(f"no network: {request.url}")
        raw = HTTPResponse(body=io.BytesIO(body), headers={"Content-Type": "application/ld+json"},
                           status=200, preload_content=False, request_url=request.url)
        return self.build_response(request, raw)


seed = CachedSession(cache_name=cache, backend="sqlite", expire_after=-1, allowable_codes=(200,))
seed.mount("https://", Shipped())
seed.get(url).json()
seed.close()

from rocrate_validator import services

result = services.validate({"rocrate_uri": crate_dir, "profile_identifier": "ro-crate-1.3",
                            "requirement_severity": "REQUIRED", "offline": True, "cache_path": cache})
issues = [f"{i.check.identifier if i.check else '?'}: {i.message}" for i in result.get_issues()]
print(json.dumps({"passed": bool(result.passed()), "issues": issues}))
"""


def validate_crate(folder: Path, cache_dir: Path) -> dict:
    """``{"passed": bool, "issues": [str]}`` of the reference validator on ``folder``."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder), str(cache_dir / "rocv-cache"), CONTEXT_URL],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
