#!/usr/bin/python3
"""Extracts the weights of an ONNX model into a safetensors file (Debian python3-onnx, numpy).

Every graph initializer and every Constant node's tensor value becomes a tensor under its ONNX
name, in graph order, with its own dtype (float32 -> F32, float16 -> F16, int64 -> I64, ...).
Usage: onnx_to_safetensors.py MODEL.onnx OUT.safetensors
"""
import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper

DTYPES = {np.dtype('float32'): 'F32', np.dtype('float16'): 'F16', np.dtype('float64'): 'F64',
          np.dtype('int64'): 'I64', np.dtype('int32'): 'I32', np.dtype('int16'): 'I16',
          np.dtype('int8'): 'I8', np.dtype('uint8'): 'U8', np.dtype('bool'): 'BOOL'}


def weights(model):
    seen = set()
    for init in model.graph.initializer:
        if init.name not in seen:
            seen.add(init.name)
            yield init.name, numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type != 'Constant':
            continue
        for attr in node.attribute:
            if attr.name == 'value' and attr.t is not None and node.output[0] not in seen:
                seen.add(node.output[0])
                yield node.output[0], numpy_helper.to_array(attr.t)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = onnx.load(sys.argv[1])
    header, blobs, offset = {}, [], 0
    for name, arr in weights(model):
        if arr.dtype not in DTYPES:
            continue
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': DTYPES[arr.dtype], 'shape': list(arr.shape),
                        'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(sys.argv[2], 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    print(f'{sys.argv[2]}: {len(header)} tensors, {offset} bytes')


if __name__ == '__main__':
    main()
