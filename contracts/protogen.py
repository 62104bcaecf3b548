"""Generate the cell's gRPC stubs from contracts/proto/recommend.proto, or check they are current.

    python -m contracts.protogen            regenerate contracts/proto/recommend_pb2{.py,.pyi,_grpc.py}
    python -m contracts.protogen --check    exit 1 when the committed stubs differ from a fresh run

protoc (from grpcio-tools, run in-process) writes `import recommend_pb2` into the _grpc module,
which only works with contracts/proto on sys.path; `fix_grpc_import` rewrites it to a relative
import so `contracts.proto.recommend_pb2_grpc` imports as a package module. The check generates
into a temporary directory, applies the same fix and compares bytes, so a stale stub (proto edited
without regenerating, or a different grpcio-tools version) is caught by tests and CI.
"""
from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from regions.errors import PermanentError

PROTO_DIR = Path(__file__).resolve().parent / "proto"
"""Where the .proto lives and where the committed stubs are."""
PROTO_FILE = "recommend.proto"
GENERATED_FILES = ("recommend_pb2.py", "recommend_pb2.pyi", "recommend_pb2_grpc.py")
"""What one protoc run produces for PROTO_FILE (messages, their type stubs, the service)."""

_BARE_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


class ProtocError(PermanentError):
    """protoc refused the .proto file; its messages went to stderr."""


def fix_grpc_import(source: str) -> str:
    """Rewrite protoc's top-level `import x_pb2 as y` into `from . import x_pb2 as y`. Pure."""
    return _BARE_IMPORT.sub(r"from . import \1 as \2", source)


def _well_known_protos() -> str:
    return str(importlib.resources.files("grpc_tools") / "_proto")


def generate(out_dir: Path, *, proto_dir: Path = PROTO_DIR, proto_file: str = PROTO_FILE) -> tuple[Path, ...]:
    """Run protoc on `proto_dir/proto_file` into `out_dir`; return the files written.

    Raises ProtocError when protoc fails (its diagnostics are printed on stderr).
    """
    from grpc_tools import protoc  # imported here: only generation needs grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{_well_known_protos()}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(proto_dir / proto_file),
    ]
    code = protoc.main(args)
    if code != 0:
        raise ProtocError(f"protoc failed with exit code {code} on {proto_dir / proto_file}; see the messages above")
    stem = Path(proto_file).stem
    written = tuple(out_dir / name for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"))
    grpc_module = written[2]
    grpc_module.write_text(fix_grpc_import(grpc_module.read_text()))
    return written


def stale_stubs(*, proto_dir: Path = PROTO_DIR, committed_dir: Path = PROTO_DIR, proto_file: str = PROTO_FILE) -> tuple[str, ...]:
    """Names of committed stub files that are missing or differ from a fresh generation."""
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = generate(Path(tmp), proto_dir=proto_dir, proto_file=proto_file)
        stale = []
        for path in fresh:
            committed = committed_dir / path.name
            if not committed.is_file() or committed.read_bytes() != path.read_bytes():
                stale.append(path.name)
        return tuple(stale)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.protogen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed stubs are stale; write nothing")
    parser.add_argument("--out", type=Path, default=PROTO_DIR, help="where to write the stubs (default: contracts/proto)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_stubs(committed_dir=args.out)
            if stale:
                print(
                    f"stale gRPC stubs in {args.out}: {', '.join(stale)}; "
                    "run `python -m contracts.protogen` (or `make proto`) and commit the result",
                    file=sys.stderr,
                )
                return 1
            print(f"gRPC stubs in {args.out} are up to date")
            return 0
        for path in generate(args.out):
            print(f"wrote {path}")
        return 0
    except ProtocError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
