"""Generate the gRPC Python stubs from ``proto/saerec/v1/recommender.proto``: the one reproducible way.

The stubs are committed under ``saerec/v1/`` (so the installed package, the Serve proxy and clients
import them as ``saerec.v1.recommender_pb2``) and a test regenerates them and checks that they are up
to date. Regenerate after editing the proto with ``python -m saerec.serving.protogen`` (needs the
``grpcio-tools`` version pinned in the ``dev`` extra: its protoc stamps the protobuf version into
the stubs).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTO = "saerec/v1/recommender.proto"
OUTPUTS = ("recommender_pb2.py", "recommender_pb2.pyi", "recommender_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) into ``out_root``; returns the written files."""
    from grpc_tools import protoc
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", str(PROTO_ROOT / PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_ROOT / PROTO}")
    return [out_root / "saerec" / "v1" / name for name in OUTPUTS]


def main() -> int:
    for p in generate(REPO):
        print(f"wrote {p.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
