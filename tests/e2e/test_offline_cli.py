"""rlaifd's offline subcommands and check-config, run as a user would."""
import json
import math
import os
import subprocess

from rlaif_e2e import check, run_main


def run(argv, stdin=None, timeout=600):
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def main(args, tmp):
    rlaifd = os.path.join(args.bin, "rlaifd")
    src = args.source

    # check-config: the quickstart config is valid; a broken one lists every problem, exit 2.
    rc, out, err = run([rlaifd, "check-config", os.path.join(src, "configs", "quickstart.json")])
    check(rc == 0, f"quickstart config rejected: {err}")
    rc, out, err = run([rlaifd, "check-config", os.path.join(src, "configs", "production.json")])
    check(rc == 0, f"production config rejected: {err}")
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        json.dump({"data_dir": 5, "bogus": 1, "sources": [{"format": "xml"}],
                   "generator": {"base_url": "ftp://x", "model": "m", "temperature": 0},
                   "judge": {"base_url": "http://x/v1", "model": "j", "concurrency": 0,
                             "dimensions": []}}, f)
    rc, out, err = run([rlaifd, "check-config", bad])
    check(rc == 2, f"bad config exit code {rc}")
    for needle in ["data_dir: expected a string", "bogus: unknown key", "sources[0].path: required",
                   "sources[0].format: must be one of", "generator.base_url: base_url must start with",
                   "generator.temperature: must be in", "judge.concurrency: must be in",
                   "judge.dimensions: at least one"]:
        check(needle in err, f"check-config output lacks {needle!r}:\n{err}")
    rc, out, err = run([rlaifd, "check-config", os.path.join(tmp, "missing.json")])
    check(rc == 2 and "cannot read" in err, f"missing config: {rc} {err}")
    # The trainer's setup is checked too, without training: a backbone
    # directory that loads passes; a mistyped one fails check-config and the
    # daemon's start (not its first training run, hours later).
    quick = json.load(open(os.path.join(src, "configs", "quickstart.json")))
    quick["data_dir"] = os.path.join(tmp, "state")
    quick["api"]["listen"] = "127.0.0.1:0"  # not quickstart's fixed port: it may be in use
    quick["trainer"]["device"] = "cpu"
    quick["trainer"]["model"] = {
        "type": "ensemble", "backbone": os.path.join(src, "tests", "trainer", "data", "qwen3_tiny")}
    good = os.path.join(tmp, "backbone_ok.json")
    json.dump(quick, open(good, "w"))
    rc, out, err = run([rlaifd, "check-config", good])
    check(rc == 0, f"a config with the qwen3 fixture backbone rejected: {err}")
    quick["trainer"]["model"]["backbone"] = os.path.join(tmp, "no-such-backbone")
    typo = os.path.join(tmp, "backbone_typo.json")
    json.dump(quick, open(typo, "w"))
    rc, out, err = run([rlaifd, "check-config", typo])
    check(rc == 2 and "trainer: backbone" in err and "no such directory" in err,
          f"check-config with a missing backbone: {rc} {err}")
    rc, out, err = run([rlaifd, "run", "--config", typo], timeout=120)
    check(rc != 0 and "trainer: backbone" in out + err and
          "no-such-backbone: no such directory" in out + err,
          f"the daemon started with a missing backbone: {rc} {out[-2000:]} {err[-2000:]}")
    # A missing anchor pair file: every candidate would be refused by the
    # anchor gate, so check-config and the start refuse it, with the
    # backbone problem on its own line.
    quick["trainer"]["anchor_pairs"] = os.path.join(tmp, "no-such-anchor.jsonl")
    json.dump(quick, open(typo, "w"))
    rc, out, err = run([rlaifd, "check-config", typo])
    check(rc == 2 and "trainer.anchor_pairs: " in err and "trainer: backbone" in err,
          f"check-config with a missing anchor file: {rc} {err}")

    # A small slice of the HH pairs in TRL form and as raw HH transcripts.
    lines = open(os.path.join(src, "data", "hh-harmless-dev.jsonl")).read().splitlines()[:400]
    trl = os.path.join(tmp, "trl.jsonl")
    with open(trl, "w") as f:
        f.write("\n".join(lines) + "\n")
    raw = os.path.join(tmp, "raw_hh.jsonl")
    with open(raw, "w") as f:
        for l in lines[:100]:
            p = json.loads(l)
            f.write(json.dumps({"chosen": "\n\n" + p["prompt"].lstrip("\n") + " " + p["chosen"],
                                "rejected": "\n\n" + p["prompt"].lstrip("\n") + " " +
                                p["rejected"]}) + "\n")

    out_dir = os.path.join(tmp, "model")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", out_dir, "--device", "cpu",
                        "--preset", "tiny", "--seed", "3"])
    check(rc == 0, f"train failed ({rc}): {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    check(res["pairs"] > 0 and 0 <= res["accuracy"] <= 1, f"train result {res}")
    check(res["train_pairs"] + res["pairs"] == 400, f"train+holdout != 400: {res}")
    # One head (the pairs name no dimension): "dimensions" has the default one, "".
    check(0 <= res["ece"] <= 1 and list(res["dimensions"]) == [""] and
          res["dimensions"][""]["pairs"] == res["pairs"], f"train ece/dimensions {res}")
    for f in ("model.pt", "tokenizer.json", "config.json"):
        check(os.path.exists(os.path.join(out_dir, f)), f"checkpoint lacks {f}")

    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", out_dir])
    check(rc != 0, "train must refuse an existing output directory")

    # The ensemble's residual transformer is a default of the ensemble only:
    # the other model types train without it, and a bad strength is refused.
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "lin"),
                        "--model-type", "linear"])
    check(rc == 0 and json.loads(out.strip().splitlines()[-1])["model_type"] == "linear",
          f"linear train failed ({rc}): {err[-2000:]}")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "bad"),
                        "--transformer-residual", "2"])
    check(rc != 0 and "transformer_residual must be in [0, 1]" in err,
          f"--transformer-residual 2 must be refused ({rc}): {err[-2000:]}")
    check(not os.path.exists(os.path.join(tmp, "bad")), "a refused run left a directory")

    # A Hugging Face tokenizer.json instead of a trained tokenizer: the
    # checkpoint carries the file as it was, scoring works, and what the
    # tokenizer cannot reproduce is refused with the reason.
    hf_tok = os.path.join(src, "tests", "trainer", "data", "hf_tokenizer", "cl100k-3k.json")
    hf_dir = os.path.join(tmp, "hf")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", hf_dir, "--device", "cpu",
                        "--model-type", "transformer", "--tokenizer", hf_tok, "--epochs", "1"])
    check(rc == 0, f"train --tokenizer failed ({rc}): {err[-2000:]}")
    check(open(os.path.join(hf_dir, "tokenizer.json"), "rb").read() ==
          open(hf_tok, "rb").read(), "the checkpoint's tokenizer.json is not the given file")
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    check("Llama 3" in cfg["tokenizer"]["kind"] and cfg["architecture"]["vocab_size"] == 3261,
          f"config.json tokenizer {cfg['tokenizer']} vocab {cfg['architecture']['vocab_size']}")
    rc, out, err = run([rlaifd, "score", "--model", hf_dir],
                       stdin=b'{"prompt": "Hi", "response": "Hello <|endoftext|>!"}\n')
    check(rc == 0 and math.isfinite(json.loads(out.splitlines()[0])["score"]),
          f"score with the Hugging Face tokenizer ({rc}): {out} {err[-1000:]}")
    nfkc = os.path.join(tmp, "nfkc.json")
    with open(nfkc, "w") as f:
        j = json.load(open(hf_tok))
        j["normalizer"] = {"type": "NFKC"}
        json.dump(j, f)
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "bad"),
                        "--device", "cpu", "--tokenizer", nfkc])
    check(rc != 0 and "normalizer NFKC is not supported" in err,
          f"an NFKC tokenizer.json must be refused ({rc}): {err[-2000:]}")
    # A pretrained backbone (the tiny GPT-2 fixture): the ensemble's
    # transformer starts from it; its tokenizer and architecture come along,
    # and the final line names it.
    backbone = os.path.join(src, "tests", "trainer", "data", "gpt2_tiny")
    bb_dir = os.path.join(tmp, "bb")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", bb_dir, "--device", "cpu",
                        "--backbone", backbone, "--epochs", "1", "--max-len", "64"])
    check(rc == 0, f"train --backbone failed ({rc}): {err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    check(res["backbone"] == backbone and res["model_type"] == "ensemble", f"backbone line {res}")
    cfg = json.load(open(os.path.join(bb_dir, "config.json")))
    check(cfg["format_version"] == 3 and cfg["architecture"]["activation"] == "gelu_tanh" and
          cfg["training"]["backbone"]["model_type"] == "gpt2" and
          cfg["training"]["learning_rate"] == 3e-5,
          f"backbone checkpoint config {cfg['architecture']} {cfg['training']}")
    rc, out, err = run([rlaifd, "score", "--model", bb_dir],
                       stdin=b'{"prompt": "Hi", "response": "Hello!"}\n')
    check(rc == 0 and math.isfinite(json.loads(out.splitlines()[0])["score"]),
          f"score with a backbone checkpoint ({rc}): {out} {err[-1000:]}")
    llama = os.path.join(src, "tests", "trainer", "data", "llama_tiny")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "llama"),
                        "--device", "cpu", "--backbone", llama, "--epochs", "1",
                        "--model-type", "transformer"])
    check(rc == 0, f"train --backbone (llama) failed ({rc}): {err[-2000:]}")
    cfg = json.load(open(os.path.join(tmp, "llama", "config.json")))
    check(cfg["architecture"]["block"] == "llama" and cfg["architecture"]["max_len"] == 64,
          f"llama checkpoint architecture {cfg['architecture']}")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "bad"),
                        "--backbone", backbone, "--preset", "small"])
    check(rc == 2 and "drop --preset" in err, f"--backbone with --preset ({rc}): {err[-2000:]}")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "bad"),
                        "--backbone", os.path.join(tmp, "no-such-backbone")])
    check(rc == 1 and "no-such-backbone: no such directory" in err,
          f"a missing backbone ({rc}): {err[-2000:]}")
    rc, out, err = run([rlaifd, "train", "--pairs", trl, "--out", os.path.join(tmp, "bad"),
                        "--model-type", "linear", "--tokenizer", hf_tok])
    check(rc == 2 and "--tokenizer applies to the transformer" in err,
          f"--tokenizer with a linear model ({rc}): {err[-2000:]}")
    check(not os.path.exists(os.path.join(tmp, "bad")), "a refused run left a directory")

    for pairs_file, n in ((trl, 400), (raw, 100)):
        rc, out, err = run([rlaifd, "eval", "--model", out_dir, "--pairs", pairs_file])
        check(rc == 0, f"eval failed: {err[-2000:]}")
        ev = json.loads(out.strip().splitlines()[-1])
        check(ev["pairs"] == n and 0 <= ev["accuracy"] <= 1, f"eval {pairs_file}: {ev}")

    rc, out, err = run([rlaifd, "score", "--model", out_dir],
                       stdin=b'{"prompt": "Hi", "response": "Hello!"}\nnot json\n')
    outs = [json.loads(l) for l in out.splitlines()]
    check(len(outs) == 2 and math.isfinite(outs[0]["score"]) and "error" in outs[1],
          f"score output {outs}")
    check(outs[0]["dimensions"][""]["raw"] == outs[0]["score"], f"score dimensions {outs[0]}")
    check(rc == 1, "score must exit 1 when a line was bad")

    rc, out, err = run([rlaifd, "eval", "--model", os.path.join(tmp, "nope"), "--pairs", trl])
    check(rc == 1 and err.strip(), "eval of a missing model must fail with a message")


if __name__ == "__main__":
    run_main(main)
