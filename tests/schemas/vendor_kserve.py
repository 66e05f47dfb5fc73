"""Re-vendors KServe's CRD schemas: ``python tests/schemas/vendor_kserve.py <dir with the CRD YAMLs>``.

Keeps each CRD's ``openAPIV3Schema`` per served version, drops ``description`` texts (size only; the
structure, types, enums, required fields and ``x-kubernetes-*`` markers are unchanged) and writes one
compact JSON file per CRD next to this script.
"""

import json
import sys
from pathlib import Path

import yaml

FILES = ("serving.kserve.io_inferenceservices.yaml", "serving.kserve.io_servingruntimes.yaml")


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(src: str) -> None:
    out = Path(__file__).parent / "kserve"
    out.mkdir(exist_ok=True)
    for name in FILES:
        crd = yaml.load((Path(src) / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        versions = {v["name"]: _strip(v["schema"]["openAPIV3Schema"]) for v in crd["spec"]["versions"]}
        doc = {"group": crd["spec"]["group"], "kind": crd["spec"]["names"]["kind"], "versions": versions}
        (out / name.replace(".yaml", ".json")).write_text(
            json.dumps(doc, separators=(",", ":"), sort_keys=True)
        )


if __name__ == "__main__":
    main(sys.argv[1])
