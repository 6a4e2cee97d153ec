#!/usr/bin/python3
"""Joins the per-shard artifacts of deploy/slurm/hyperc-shards.sbatch into one sharded artifact:
writes OUT/hyperc.index.json (the artifact index of core/format/SPEC.md, as `hyperc compress
INDEX -o OUT` writes it), so that `hyperc decompress OUT -o restored/` restores the model.

    hyperc-assemble.py INDEX OUT     write OUT/hyperc.index.json (every shard must be there)
    hyperc-assemble.py --count INDEX print the number of shards (the job array's size)

Standard library only (Debian's /usr/bin/python3)."""
import json
import os
import struct
import sys

ARTIFACT_INDEX = "hyperc.index.json"


def shards(index):
    return sorted(set(json.load(open(index))["weight_map"].values()))


def artifact_name(shard):
    base = shard[: -len(".safetensors")] if shard.endswith(".safetensors") else shard
    return base + ".hyc.safetensors"


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 256 << 20:
            raise ValueError("%s: header of %d bytes" % (path, n))
        return json.loads(f.read(n))


def assemble(index, out):
    src = json.load(open(index))
    weight_map, entries, total = {}, [], 0
    for shard in shards(index):
        name = artifact_name(shard)
        path = os.path.join(out, name)
        if not os.path.exists(path):
            raise SystemExit("hyperc-assemble: %s is missing (did every array task succeed?)" % path)
        h = header(path)
        meta = h.pop("__metadata__", {})
        if not any(k.startswith("hyperc.") for k in meta):
            raise SystemExit("hyperc-assemble: %s is not a hyperc artifact" % path)
        for part, t in h.items():
            weight_map[part] = name
            total += t["data_offsets"][1] - t["data_offsets"][0]
        entries.append({"artifact": name, "source": shard})
    doc = {
        "metadata": {
            "hyperc.format": "hyperc-artifact-index",
            "hyperc.format_version": "1",
            "total_size": total,
            "source_index": os.path.basename(index),
            "source_metadata": src.get("metadata", {}),
        },
        "weight_map": weight_map,
        "shards": entries,
    }
    tmp = os.path.join(out, ARTIFACT_INDEX + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(out, ARTIFACT_INDEX))
    print("hyperc-assemble: %s: %d shards, %d parts" % (os.path.join(out, ARTIFACT_INDEX), len(entries), len(weight_map)))


def main(argv):
    if len(argv) == 2 and argv[0] == "--count":
        print(len(shards(argv[1])))
        return 0
    if len(argv) == 2 and not argv[0].startswith("-"):
        assemble(argv[0], argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
