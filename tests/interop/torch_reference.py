"""Independent oracle for loopgrad's PyTorch interop: runs torch.nn.RNN, LSTM and GRU (float64),
each followed by a torch.nn.Linear output layer `out`, on a random sequence with random targets,
and writes, for each, <dir>/<cell>_weights.safetensors (both modules' state_dicts),
<dir>/<cell>_run.safetensors (inputs x [T, I], targets y [T, 1], hidden states h [T, H]) and
<dir>/<cell>_grads.safetensors (torch autograd's gradient of sum_t (out(h_t) - y_t)^2, in the
state_dicts' names).
Usage: /usr/bin/python3 torch_reference.py DIR. Needs Debian's python3-torch; writes safetensors
by hand (8-byte header length, JSON header, raw little-endian data), so no other package."""
import json
import struct
import sys

import torch


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().to(torch.float64).numpy().tobytes()
        header[name] = {"dtype": "F64", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main(out):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    inputs, hidden, steps = 3, 4, 12
    x = torch.randn(steps, 1, inputs)
    y = torch.randn(steps, 1, 1)
    for name, module in (("rnn", torch.nn.RNN(inputs, hidden)), ("lstm", torch.nn.LSTM(inputs, hidden)),
                         ("gru", torch.nn.GRU(inputs, hidden))):
        output = torch.nn.Linear(hidden, 1)
        h, _ = module(x)
        loss = ((output(h) - y) ** 2).sum()
        loss.backward()
        weights = dict(module.state_dict())
        grads = {k: p.grad for k, p in module.named_parameters()}
        for k, p in output.named_parameters():
            weights["out." + k] = p.detach()
            grads["out." + k] = p.grad
        write_safetensors(f"{out}/{name}_weights.safetensors", weights)
        write_safetensors(f"{out}/{name}_grads.safetensors", grads)
        write_safetensors(f"{out}/{name}_run.safetensors", {"x": x[:, 0, :], "y": y[:, 0, :], "h": h[:, 0, :]})


if __name__ == "__main__":
    main(sys.argv[1])
