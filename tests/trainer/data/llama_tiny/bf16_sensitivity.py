# How far bf16 autocast alone moves this fixture's scores (development only;
# run from this folder with a Python that has numpy and torch): the float64
# reference forward pass (../llama_reference.py) with every product's
# operands and output rounded to bf16, as CUDA autocast computes them (norms,
# rotary, softmax and residual adds in float). The fixture's weights are
# enlarged so that loader mistakes show (make_fixture.py), and its attention
# is sharp, so rounding moves some scores by ~0.1 of max(1, |score|):
# HfBackboneGpu's tolerance for the Llama-family fixtures rests on this.
import sys

import numpy as np
import torch

sys.path.insert(0, "..")
import make_fixture as mf  # noqa: E402
import llama_reference as ref  # noqa: E402

M = mf.MODEL


def bf16(a):
    t = torch.from_numpy(np.asarray(a, dtype=np.float32)).to(torch.bfloat16)
    return t.to(torch.float64).numpy()


def autocast_forward(w, ids):
    W = {k: v.astype(np.float64) for k, v in w.items()}
    x = W["embed_tokens.weight"][np.array(ids)]

    def norm(u, name):
        return ref.rms_norm(u, W[name], M.eps)

    def lin(u, name):
        return bf16(bf16(u) @ bf16(W[name]).T)

    for i in range(M.L):
        p = "layers.%d." % i
        a = bf16(norm(x, p + "input_layernorm.weight"))
        q, k, v = (lin(a, p + "self_attn.%s_proj.weight" % n) for n in "qkv")
        x = x + lin(bf16(M.attention_loop(q, k, v)), p + "self_attn.o_proj.weight")
        m = bf16(norm(x, p + "post_attention_layernorm.weight"))
        gate, up = lin(m, p + "mlp.gate_proj.weight"), lin(m, p + "mlp.up_proj.weight")
        x = x + lin(bf16(bf16(ref.silu(gate)) * up), p + "mlp.down_proj.weight")
    return norm(x, "norm.weight")


def main():
    rng = np.random.default_rng(mf.SEED)
    weights = M.make_weights(rng, mf.V, mf.D, mf.I)
    head_weight = rng.standard_normal(mf.D).astype(np.float32).astype(np.float64)
    cases = mf.common.make_cases(rng, mf.V, mf.EOS)
    worst = 0.0
    for ids in cases:
        exact = M.forward(weights, ids)[-1] @ head_weight + mf.HEAD_BIAS
        rounded = autocast_forward(weights, ids)[-1] @ head_weight + mf.HEAD_BIAS
        err = abs(exact - rounded) / max(1.0, abs(exact))
        worst = max(worst, err)
        print("score %8.4f  bf16 %8.4f  relative error %.3f" % (exact, rounded, err))
    print("largest: %.3f" % worst)


if __name__ == "__main__":
    main()
